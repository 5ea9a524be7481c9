"""llama-server's ``POST /tokenize`` and ``POST /detokenize``, for any model of the catalog.

The bodies are llama-server's (``content``, ``add_special``; ``tokens``) plus ``model``: whose vocabulary
(default: the default model). The model is loaded if it is not; no slot is taken (tokenising does not
touch the decode loop). ``with_pieces`` is refused by name rather than ignored.
"""

from __future__ import annotations

import msgspec
from aiohttp import web

from mullama.core import errors
from mullama.http.keys import SUPERVISOR
from mullama.http.shapes import decode_body, json_response


class TokenizeBody(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    content: str
    add_special: bool = False   # llama-server's default: no BOS
    with_pieces: bool = False
    model: str = ""


class DetokenizeBody(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    tokens: list[int]
    model: str = ""


async def _with_runner(request: web.Request, model: str, call):
    sup = request.app[SUPERVISOR]
    sup.check_open()
    entry = sup.resolve(model)
    lease = await sup.lifecycle.acquire(entry)
    try:
        return await call(lease.client)
    finally:
        sup.lifecycle.release(lease)


async def tokenize(request: web.Request) -> web.Response:
    body = decode_body(await request.read(), TokenizeBody, '{"content": TEXT, "model": NAME}')
    if body.with_pieces:
        raise errors.InvalidArgument("with_pieces is not supported: detokenize the tokens you need",
                                     param="with_pieces")
    tokens = await _with_runner(request, body.model, lambda c: c.tokenize(body.content, body.add_special))
    return json_response({"tokens": tokens})


async def detokenize(request: web.Request) -> web.Response:
    body = decode_body(await request.read(), DetokenizeBody, '{"tokens": [IDS], "model": NAME}')
    content = await _with_runner(request, body.model, lambda c: c.detokenize(body.tokens))
    return json_response({"content": content})


def add_routes(app: web.Application) -> None:
    app.router.add_post("/tokenize", tokenize)
    app.router.add_post("/detokenize", detokenize)
