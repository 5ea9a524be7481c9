"""``/internal/models/{model}/adapters``: the LoRA adapters of a loaded model, listed, loaded and unloaded
at run time (llama-server's ``/lora-adapters``, per model).

``GET`` lists them (id, name, path, default scale, alpha, requests using each); ``POST {"path", "scale",
"name"}`` loads one into the model's runner (a path already loaded answers with its entry); ``DELETE
.../adapters/{id}`` unloads one: new requests can no longer name it, and it is freed once the requests using
it have ended. Adapters a model's config lists (``[[models.NAME.adapters]]``) load with it and again after a
restart; ones loaded here last as long as the runner. Requests choose theirs with ``lora: [{id|name,
scale}]``.
"""

from __future__ import annotations

import msgspec
from aiohttp import web

from mullama import wire
from mullama.core import errors
from mullama.http.internal import serving_runtime
from mullama.http.shapes import decode_body, json_response
from mullama.runners.client import RunnerClient


def _runner(request: web.Request) -> tuple[str, RunnerClient]:
    rt = serving_runtime(request, "its adapters (configured ones load with it)")
    return rt.name, rt.handle.client


def _answer(model: str, adapters: list[wire.AdapterInfo]) -> web.Response:
    return json_response({"model": model, "adapters": msgspec.to_builtins(adapters)})


async def list_adapters(request: web.Request) -> web.Response:
    model, client = _runner(request)
    return _answer(model, await client.adapters())


async def add_adapter(request: web.Request) -> web.Response:
    model, client = _runner(request)
    spec = decode_body(await request.read(), wire.AdapterSpec)
    added = await client.add_adapter(spec)
    return json_response({"model": model, "adapter": msgspec.to_builtins(added)})


async def remove_adapter(request: web.Request) -> web.Response:
    model, client = _runner(request)
    raw = request.match_info["id"]
    if not raw.isdigit():
        raise errors.InvalidArgument(f"adapter id must be a non-negative integer, got {raw!r}")
    return _answer(model, await client.remove_adapter(int(raw)))


def add_routes(app: web.Application) -> None:
    r = app.router
    r.add_get("/internal/models/{model}/adapters", list_adapters)
    r.add_post("/internal/models/{model}/adapters", add_adapter)
    r.add_delete("/internal/models/{model}/adapters/{id}", remove_adapter)
