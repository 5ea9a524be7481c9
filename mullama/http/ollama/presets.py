"""Presets over Ollama's API (docs/presets.md): ``POST /api/create``, and what /api/tags and /api/show say
about a preset.

``/api/create`` takes both bodies Ollama's clients send: the current one (``from``, ``system``,
``template``, ``parameters``, ``messages``, ``adapters``, ``license``) and the older one with the
Modelfile's text (``modelfile``, read by ``models/modelfile.py``). Everything is checked and the preset
saved before the answer starts, so every refusal is an HTTP error in Ollama's ``{"error"}`` shape: 400 for
a bad body, a Go TEMPLATE, an unknown PARAMETER, ``quantize`` or ``files`` (no weights are made or
uploaded here: a preset shares its base's); 404 for a base that is not in the catalog (Ollama would try
to pull it); 409 for a name that is a model's, or a preset of the config file. Then, streamed, Ollama's
status lines (``using existing layer``, ``creating new layer``, ``writing manifest``, ``success``), else
one ``{"status": "success"}``.
"""

from __future__ import annotations

from pathlib import PurePath
from typing import Any

import msgspec
from aiohttp import web

from mullama.config import RunnerConfig
from mullama.config.presets import PresetAdapter, PresetMessage, PresetSettings, check_preset, preset_key
from mullama.core import errors
from mullama.http.keys import SUPERVISOR
from mullama.http.ollama import format as ollama
from mullama.http.shapes import NDJSON_HEADERS, decode_body, json_response
from mullama.models import modelfile
from mullama.models.catalog import ModelEntry
from mullama.models.presets import Preset
from mullama.serving.supervisor import Supervisor

#: the Modelfile's word for each field a check names
_INSTRUCTIONS = {"": "model", "from": "FROM", "system": "SYSTEM", "template": "TEMPLATE", "parameters": "PARAMETER",
                 "adapters": "ADAPTER", "messages": "MESSAGE", "license": "LICENSE"}


class _Message(msgspec.Struct, kw_only=True):
    role: str
    content: str = ""


class _CreateBody(msgspec.Struct, kw_only=True):
    model: str = ""
    name: str = ""                      # older clients' spelling of model
    from_: str | None = msgspec.field(default=None, name="from")
    modelfile: str | None = None        # older clients: the Modelfile's text
    system: str | None = None
    template: str | None = None
    license: str | list[str] | None = None
    parameters: dict[str, Any] | None = None
    messages: list[_Message] | None = None
    adapters: dict[str, str] | None = None  # file name -> blob digest: the adapter of the base by that name
    files: dict[str, str] | None = None
    quantize: str | None = None
    quantization: str | None = None
    path: str | None = None             # oldest clients: a Modelfile on the server's disk
    stream: bool | None = None


def _modelfile_label(field: str) -> str:
    """``parameters.temperature`` -> ``PARAMETER temperature``: errors in the Modelfile's words."""
    head, _, rest = field.partition(".")
    head, _, index = head.partition("[")
    word = _INSTRUCTIONS.get(head, head)
    if rest:
        return f"{word} {rest}"
    return f"{word} #{int(index.rstrip(']')) + 1}" if index else word


def _json_label(field: str) -> str:
    return field or "model"


def parse_create(raw: bytes) -> tuple[str, PresetSettings, bool, Any]:
    """An /api/create body -> (name, preset as asked, stream, how its fields are named in errors)."""
    b: _CreateBody = decode_body(raw, _CreateBody, '{"model": NAME, "from": BASE, ...} or {"model": NAME, '
                                                   '"modelfile": TEXT}')
    name = (b.model or b.name).strip()
    if not name:
        raise errors.InvalidArgument("model is required: the name of the preset to create", param="model")
    if b.quantize or b.quantization:
        raise errors.InvalidArgument("quantize is not supported: a preset shares its base model's weights, so "
                                     "nothing is quantized; make a quantized GGUF with llama.cpp's llama-quantize "
                                     "and put it in a models directory", param="quantize")
    if b.files:
        raise errors.InvalidArgument("files are not supported: mullama takes no uploaded weights (blobs); put the "
                                     "GGUF file in a models directory and create from its name", param="files")
    if b.path:
        raise errors.InvalidArgument("path is not supported: send the Modelfile's text as modelfile", param="path")
    stream = b.stream is not False
    if b.modelfile is not None:
        given = [f for f in ("from_", "system", "template", "license", "parameters", "messages", "adapters")
                 if getattr(b, f) is not None]
        if given:
            raise errors.InvalidArgument(f"give either a modelfile or the fields ({given[0].rstrip('_')}, ...), "
                                         "not both", param="modelfile")
        return name, modelfile.parse(b.modelfile).preset(), stream, _modelfile_label
    if not (b.from_ or "").strip():
        raise errors.InvalidArgument('from is required: the base model of the preset (e.g. "from": "smollm2")',
                                     param="from")
    try:
        messages = msgspec.convert([msgspec.to_builtins(m) for m in b.messages or ()], tuple[PresetMessage, ...])
    except msgspec.ValidationError as exc:
        message, _, where = str(exc).partition(" - at `$")
        raise errors.InvalidArgument(f"messages{where.rstrip('`')}: {message}", param="messages") from None
    license = "\n".join(b.license) if isinstance(b.license, list) else b.license
    params = modelfile.parameters(b.parameters or {}, label=lambda n: f"parameters.{n}", text=False)
    return name, PresetSettings(from_=b.from_ or "", system=b.system, template=b.template, parameters=params,
                                adapters=tuple(PresetAdapter(name=modelfile.adapter_name(f)) for f in b.adapters or {}),
                                messages=messages, license=license), stream, _json_label


def _base_name(value: str) -> str:
    """``FROM /srv/models/x.Q4_K_M.gguf`` (a path) -> the file's name, which the catalog knows the file by."""
    text = value.strip()
    if text.startswith(("/", "./", "../", "~")) or text.lower().endswith(".gguf"):
        return PurePath(text).name
    return text


def save(sup: Supervisor, name: str, settings: PresetSettings, label=_json_label) -> tuple[Preset, ModelEntry]:
    """Check ``settings`` as the preset ``name`` and keep it (flat over a preset it is made from); the saved
    preset and its base's entry."""
    key = preset_key(name)
    catalog = sup.catalog(refresh=True)
    try:
        taken = catalog.is_alias(key) or bool(catalog.resolve(key))
    except (errors.ModelNotFound, errors.InvalidModelName):
        taken = False
    except errors.ModelUnavailable:  # a broken file by that name: still its name
        taken = True
    if taken:
        raise errors.PresetConflict(f"{key!r} is the name of a model in the catalog; a preset needs a name of its "
                                    "own", param="model")
    stored = sup.presets.flat(settings)
    try:
        check_preset(name, stored, label, sup.settings.max_tokens_limit)
    except errors.ConfigError as exc:
        raise errors.InvalidArgument(str(exc)) from None
    base = _base_name(stored.from_)
    try:
        entry = sup.resolve(base)
    except errors.ModelNotFound as exc:
        raise errors.ModelNotFound(f"cannot create {key!r}: its base model {stored.from_!r}: {exc}",
                                   param="from") from None
    if base != stored.from_:  # a file's name is how it was found, not a name to keep
        stored = msgspec.structs.replace(stored, from_=entry.name)
    return sup.presets.save(key, stored), entry


async def create(request: web.Request) -> web.StreamResponse:
    sup = request.app[SUPERVISOR]
    name, settings, stream, label = parse_create(await request.read())
    preset, entry = save(sup, name, settings, label)
    if not stream:
        return json_response({"status": "success"})
    resp = web.StreamResponse(headers=NDJSON_HEADERS)
    await resp.prepare(request)
    for status in (f"using existing layer sha256:{ollama.entry_digest(entry)}",
                   f"creating new layer sha256:{preset.digest}", "writing manifest", "success"):
        await resp.write(msgspec.json.encode({"status": status}) + b"\n")
    await resp.write_eof()
    return resp


# ---------------------------------------------------------------------- listing and showing


def tag_rows(sup: Supervisor) -> list[dict[str, Any]]:
    """/api/tags rows of the presets whose base can be served: the base's size and details."""
    return [{"name": p.name, "model": p.name, "modified_at": ollama.rfc3339(p.modified), "size": e.size_bytes,
             "digest": p.digest, "details": {**ollama.header_details(e.header), "parent_model": e.name}}
            for p, e, _ in sup.preset_entries() if e is not None]


def show(preset: Preset, entry: ModelEntry, cfg: RunnerConfig) -> dict[str, Any]:
    """What /api/show says of a preset over its base's answer: a Modelfile that makes it again, the
    parameters a request gets (the base's defaults under the preset's), its system prompt, template,
    messages and license (the base's template and license when it has none)."""
    p = preset.settings
    own = modelfile.parameter_lines(p.parameters.given())
    effective = modelfile.parameter_lines({**dict(cfg.sampling), **p.parameters.given()})
    out: dict[str, Any] = {
        "modelfile": modelfile.render(preset.name, p, "\n".join(own)),
        "parameters": "\n".join([*effective, f"num_ctx {cfg.n_ctx}"]),
        "system": p.system or "", "messages": [msgspec.to_builtins(m) for m in p.messages],
        "details": {**ollama.header_details(entry.header), "parent_model": entry.name},
        "modified_at": ollama.rfc3339(preset.modified),
    }
    if p.template is not None:
        out["template"] = p.template
    if p.license is not None:
        out["license"] = p.license
    return out


#: (method, path, handler); their errors are in Ollama's shape
ROUTES = (("POST", "/api/create", create),)
PATHS = frozenset(path for _, path, _ in ROUTES)


def add_routes(app: web.Application) -> None:
    for method, path, handler in ROUTES:
        app.router.add_route(method, path, handler)
