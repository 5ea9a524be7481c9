"""Presets: a name that serves a base model with its own system prompt, chat template, sampling defaults,
LoRA adapters and few-shot messages -- Ollama's Modelfile in mullama's terms (docs/presets.md).

``[presets.NAME]`` tables of the settings hold them, and ``/api/create`` makes more at run time
(``models/presets.py`` keeps those on disk). A preset is never a copy of the weights: requests to it
go to its base's runner, so there is nothing here to load, only what to type and check. The same
``check_preset`` guards both sources, so a preset means the same thing whichever way it was made.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from typing import Any, Literal

import msgspec

from mullama.config.sampling import SamplingDefaults, check_sampling
from mullama.core.errors import ConfigError

#: A preset's name becomes a file name and a model name in URLs: letters, digits, ``._-``, one ``:tag``.
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}(:[A-Za-z0-9][A-Za-z0-9._-]{0,99})?$")
#: What a llama.cpp built-in template's name looks like (``chatml``, ``llama3``, ``mistral-v7``, ...).
_BUILTIN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
#: Go's text/template, Ollama's TEMPLATE language: ``{{ .Prompt }}``, ``{{ if .System }}``, ``{{ end }}``.
_GO_TEMPLATE = re.compile(r"\{\{-?\s*(\.|\$|(if|range|with|else|end|template|block|define)\b)")

Label = Callable[[str], str]


class PresetParameters(SamplingDefaults, frozen=True, kw_only=True, forbid_unknown_fields=True, omit_defaults=True):
    """A preset's request defaults: the per-model sampling fields, plus how long an answer may be."""

    max_tokens: int | None = None  # Ollama's num_predict; -1: until the context is full


class PresetAdapter(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A LoRA adapter of the base model, by the name the base's ``[[models.NAME.adapters]]`` gives it."""

    name: str
    scale: float = 1.0


class PresetMessage(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """One few-shot turn (Ollama's MESSAGE), sent before the conversation."""

    role: Literal["system", "user", "assistant"]
    content: str


class PresetSettings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True, omit_defaults=True):
    """``[presets.NAME]``: what a request to NAME gets on top of its base model."""

    from_: str = msgspec.field(name="from")  # the base: a model name, alias or pulled name (never a file)
    system: str | None = None       # the system prompt, when the request has none of its own
    template: str | None = None     # a Jinja chat template's source, or a llama.cpp built-in template's name
    parameters: PresetParameters = msgspec.field(default_factory=PresetParameters)
    adapters: tuple[PresetAdapter, ...] = ()   # the adapter set a request gets unless it names its own
    messages: tuple[PresetMessage, ...] = ()   # few-shot turns before the conversation
    license: str | None = None

    def defaults(self) -> tuple[tuple[str, Any], ...]:
        """(field, value) request defaults, laid over the base's (``serving.job.with_defaults``)."""
        return tuple(self.parameters.given().items())


def inherit(parent: PresetSettings, child: PresetSettings) -> PresetSettings:
    """``child`` made from the preset ``parent``: its own fields win (parameters field by field), the rest
    and the base come from ``parent`` -- so a preset never depends on another preset staying around."""
    params = PresetParameters(**{**parent.parameters.given(), **child.parameters.given()})
    return PresetSettings(
        from_=parent.from_, system=parent.system if child.system is None else child.system,
        template=parent.template if child.template is None else child.template, parameters=params,
        adapters=child.adapters or parent.adapters, messages=child.messages or parent.messages,
        license=parent.license if child.license is None else child.license)


def preset_key(name: str) -> str:
    """The one spelling a preset is looked up by: lowercase, without Ollama's implied ``:latest``."""
    return name.strip().lower().removesuffix(":latest")


def _check_name(name: str, label: str) -> None:
    if not _NAME.match(name) or ".." in name:
        raise ConfigError(f"{label}: invalid preset name {name!r}: use letters, digits, '.', '_', '-' and at "
                          "most one ':tag' (at most 100 characters each)")


def _check_template(template: str, label: str) -> None:
    """A Jinja source or a built-in name; an Ollama (Go) template is refused: nothing here can run it."""
    if _GO_TEMPLATE.search(template):
        raise ConfigError(f"{label}: this is a Go template (Ollama's {{{{ .Prompt }}}} syntax), which mullama "
                          "cannot run: give a Jinja chat template (as in a GGUF's tokenizer.chat_template) or "
                          "the name of a llama.cpp built-in template (chatml, llama3, mistral-v7, ...)")
    if not ("{{" in template or "{%" in template or _BUILTIN.match(template)):
        raise ConfigError(f"{label}: expected a Jinja chat template or a built-in template's name, got "
                          f"{template[:60]!r}")


def check_preset(name: str, preset: PresetSettings, label: Label, max_tokens: int) -> None:
    """Everything the types do not say; ``label(field)`` names the field in the message; ``max_tokens``:
    the server's ``max_tokens_limit``, which a preset's default may not pass either."""
    _check_name(name, label(""))
    if not preset.from_.strip():
        raise ConfigError(f"{label('from')}: expected the name of the base model, got an empty string")
    if preset_key(preset.from_) == preset_key(name):
        raise ConfigError(f"{label('from')}: a preset cannot be its own base ({preset.from_!r})")
    if preset.template is not None:
        _check_template(preset.template, label("template"))
    params = preset.parameters
    if params.max_tokens is not None and not (params.max_tokens == -1 or 1 <= params.max_tokens <= max_tokens):
        raise ConfigError(f"{label('parameters.max_tokens')}: expected -1 (until the context is full) or 1 to "
                          f"{max_tokens} (max_tokens_limit), got {params.max_tokens}")
    try:
        check_sampling(msgspec.structs.replace(params, max_tokens=None), "parameters")
    except ConfigError as exc:  # "parameters.temperature: ..." named as the caller names fields
        field, _, problem = str(exc).partition(": ")
        raise ConfigError(f"{label(field)}: {problem}") from None
    seen: set[str] = set()
    for i, adapter in enumerate(preset.adapters):
        if not adapter.name.strip() or not math.isfinite(adapter.scale):
            raise ConfigError(f"{label(f'adapters[{i}]')}: expected a name and a finite scale, got "
                              f"{adapter.name!r} at {adapter.scale!r}")
        if adapter.name in seen:
            raise ConfigError(f"{label(f'adapters[{i}]')}: adapter {adapter.name!r} is named twice")
        seen.add(adapter.name)


def check_presets(presets: Mapping[str, PresetSettings], aliases: Mapping[str, str], base: str,
                  max_tokens: int) -> None:
    """``[presets]`` of the settings: each preset, names that clash, and bases that lead in a circle."""
    keys: dict[str, str] = {}
    alias_keys = {a.strip().lower() for a in aliases}
    for name, preset in presets.items():
        check_preset(name, preset, lambda field, name=name: f"{base}.{name}.{field}" if field else f"{base}.{name}",
                     max_tokens)
        key = preset_key(name)
        if key in keys:
            raise ConfigError(f"{base}.{name}: the same name as preset {keys[key]!r}")
        if key in alias_keys:
            raise ConfigError(f"{base}.{name}: {name!r} is also an alias; keep one of the two")
        keys[key] = name
    by_key = {preset_key(n): p for n, p in presets.items()}
    for name in presets:
        chain, key = [name], preset_key(presets[name].from_)
        while key in by_key and len(chain) <= len(presets):
            chain.append(key)
            if key == preset_key(name):
                raise ConfigError(f"{base}.{name}.from: its bases lead back to it ({' -> '.join(chain)})")
            key = preset_key(by_key[key].from_)
