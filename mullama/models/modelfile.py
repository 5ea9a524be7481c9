"""Ollama's Modelfile, read into a preset and written back out (docs/presets.md). Pure: no I/O.

``parse`` reads what ``ollama create -f`` (older clients) and ``mullama create`` send: ``FROM``,
``SYSTEM``, ``TEMPLATE``, ``PARAMETER`` (``stop`` repeated), ``ADAPTER``, ``MESSAGE``, ``LICENSE``;
``#`` comment lines; values bare to the end of the line, ``"quoted"`` (escapes ``\\"``, ``\\\\``, ``\\n``,
``\\t``, ``\\r``) or triple-quoted across lines. ``ADAPTER PATH`` names an adapter of the base by the file's
stem (``./sql.gguf`` is ``sql``); mullama also reads ``ADAPTER NAME SCALE``. ``parameters`` maps
Ollama's parameter names -- from a Modelfile's text or ``/api/create``'s JSON -- to a preset's. Every
problem is an ``InvalidArgument`` naming the line or the parameter.
"""

from __future__ import annotations

import contextlib
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import PurePath
from typing import Any

import msgspec

from mullama.config.presets import PresetAdapter, PresetMessage, PresetParameters, PresetSettings
from mullama.core.errors import InvalidArgument

INSTRUCTIONS = ("FROM", "SYSTEM", "TEMPLATE", "PARAMETER", "ADAPTER", "MESSAGE", "LICENSE")
#: Ollama's parameter names that are spelled otherwise here
RENAMED = {"num_predict": "max_tokens"}
#: Ollama parameters that size or place the model: one runner serves a base and all its presets
LOAD_TIME = frozenset({"num_ctx", "num_batch", "num_gpu", "main_gpu", "num_thread", "numa", "low_vram", "f16_kv",
                       "use_mmap", "use_mlock", "vocab_only", "logits_all", "embedding_only", "num_keep"})
#: samplers llama.cpp no longer has
REMOVED = frozenset({"tfs_z", "penalize_newline"})
_LISTS = frozenset({"stop", "samplers", "dry_sequence_breakers"})
_ROLES = ("system", "user", "assistant")
_ESCAPES = {'"': '"', "\\": "\\", "n": "\n", "t": "\t", "r": "\r"}
_WORD = re.compile(r"[ \t]*([^\s]+)[ \t]*")


@dataclass
class Modelfile:
    """A Modelfile as read: the parameters still as text, by the name they were given."""

    from_: str = ""
    system: str | None = None
    template: str | None = None
    parameters: dict[str, list[str]] = field(default_factory=dict)
    adapters: list[PresetAdapter] = field(default_factory=list)
    messages: list[PresetMessage] = field(default_factory=list)
    licenses: list[str] = field(default_factory=list)

    def preset(self) -> PresetSettings:
        """The preset it describes; a parameter that does not fit names its PARAMETER line."""
        return PresetSettings(
            from_=self.from_, system=self.system, template=self.template,
            parameters=parameters(self.parameters, label=lambda name: f"PARAMETER {name}", text=True),
            adapters=tuple(self.adapters), messages=tuple(self.messages),
            license="\n".join(self.licenses) if self.licenses else None)


def _bad(line: int, message: str) -> InvalidArgument:
    return InvalidArgument(f"Modelfile line {line}: {message}", param="modelfile")


def _end_of_line(text: str, i: int) -> int:
    end = text.find("\n", i)
    return len(text) if end < 0 else end


def _after_quote(text: str, i: int, line: int) -> int:
    """Where the next line starts, after a closing quote at ``i``; nothing but blanks may follow it."""
    end = _end_of_line(text, i)
    if text[i:end].strip():
        raise _bad(line, f"unexpected text after the closing quote: {text[i:end].strip()[:40]!r}")
    return end + 1


def _value(text: str, i: int, line: int) -> tuple[str, int]:
    """The value at ``text[i:]`` and where the next line starts."""
    if text.startswith('"""', i):
        end = text.find('"""', i + 3)
        if end < 0:
            raise _bad(line, 'a """ string is not closed')
        return text[i + 3:end], _after_quote(text, end + 3, line)
    if text.startswith('"', i):
        out, j = [], i + 1
        while j < len(text) and text[j] != '"':
            if text[j] == "\\" and text[j + 1:j + 2] in _ESCAPES:
                j += 1
                out.append(_ESCAPES[text[j]])
            else:
                out.append(text[j])
            j += 1
        if j >= len(text):
            raise _bad(line, 'a " string is not closed')
        return "".join(out), _after_quote(text, j + 1, line)
    end = _end_of_line(text, i)
    return text[i:end].strip(), end + 1


def _word(text: str, i: int, line: int, what: str) -> tuple[str, int]:
    """One word (a parameter's name, a message's role) on the same line, and where its value starts."""
    m = _WORD.match(text, i)
    if m is None:
        raise _bad(line, f"expected {what}")
    return m.group(1), m.end()


def parse(text: str) -> Modelfile:
    """A Modelfile's text; InvalidArgument (param ``modelfile``) names the line of the first problem."""
    text = text.replace("\r\n", "\n")
    mf, i = Modelfile(), 0
    while i < len(text):
        line = text.count("\n", 0, i) + 1
        end = _end_of_line(text, i)
        head = text[i:end].strip()
        if not head or head.startswith("#"):
            i = end + 1
            continue
        word, j = _word(text, i, line, "an instruction")
        command = word.upper()
        if command not in INSTRUCTIONS:
            raise _bad(line, f"unknown instruction {word!r} (mullama reads {', '.join(INSTRUCTIONS)})")
        name = ""
        if command in ("PARAMETER", "MESSAGE"):
            name, j = _word(text, j, line, "a parameter name and a value" if command == "PARAMETER"
                            else "a role (system, user or assistant) and the message")
        value, i = _value(text, j, line)
        if not value and command != "SYSTEM":
            raise _bad(line, f"{command} needs a value")
        _apply(mf, command, name, value, line)
    if not mf.from_:
        raise InvalidArgument("the Modelfile has no FROM line: name the base model (e.g. FROM smollm2)",
                              param="modelfile")
    return mf


def _apply(mf: Modelfile, command: str, name: str, value: str, line: int) -> None:
    if command == "FROM":
        if mf.from_:
            raise _bad(line, "FROM is given twice: a preset has one base model")
        mf.from_ = value
    elif command == "SYSTEM":
        mf.system = value
    elif command == "TEMPLATE":
        mf.template = value
    elif command == "LICENSE":
        mf.licenses.append(value)
    elif command == "PARAMETER":
        mf.parameters.setdefault(name.lower(), []).append(value)
    elif command == "MESSAGE":
        if name.lower() not in _ROLES:
            raise _bad(line, f"MESSAGE role {name!r}: expected system, user or assistant")
        mf.messages.append(PresetMessage(role=name.lower(), content=value))  # type: ignore[arg-type]
    else:
        mf.adapters.append(_adapter(value, line))


def _adapter(value: str, line: int) -> PresetAdapter:
    """``ADAPTER ./sql.gguf`` -> the base's adapter ``sql``; ``ADAPTER sql 0.5`` at scale 0.5 (mullama's)."""
    path, scale = value, 1.0
    head, _, tail = value.rpartition(" ")
    if head.strip():
        with contextlib.suppress(ValueError):
            path, scale = head.strip(), float(tail)
    name = adapter_name(path)
    if not name or not math.isfinite(scale):
        raise _bad(line, f"ADAPTER {value!r}: expected a path or an adapter's name, then optionally a scale")
    return PresetAdapter(name=name, scale=scale)


def adapter_name(path: str) -> str:
    """The name an adapter file is known by: its file name without ``.gguf`` (as the base's adapters
    are named by default)."""
    stem = PurePath(path.strip().replace("\\", "/")).name
    return stem[:-5] if stem.lower().endswith(".gguf") else stem


def parameters(values: Mapping[str, Any], *, label: Callable[[str], str], text: bool) -> PresetParameters:
    """Ollama's parameters (``temperature``, ``num_predict``, ``stop``, ...) as a preset's; ``text``: each
    value is the list of a Modelfile's PARAMETER lines of that name. Unknown names, load settings (``num_ctx``,
    one runner serves a base and its presets) and removed samplers are refused, naming them."""
    unknown = [n for n in values if n not in PresetParameters.__struct_fields__ and n not in RENAMED
               and n not in LOAD_TIME and n not in REMOVED]
    if unknown:
        known = sorted({*PresetParameters.__struct_fields__, *RENAMED} - set(RENAMED.values()))
        raise InvalidArgument(f"{', '.join(label(n) for n in unknown)}: unknown parameter"
                              f"{'s' if len(unknown) > 1 else ''}; presets take {', '.join(known)}",
                              param=label(unknown[0]))
    fields: dict[str, Any] = {}
    for name, value in values.items():
        if name in LOAD_TIME:
            raise InvalidArgument(f"{label(name)}: a load setting, which a preset cannot change: a preset shares "
                                  "its base model's runner; set it for the base ([models.BASE] in the config, "
                                  "docs/configuration.md)", param=label(name))
        if name in REMOVED:
            raise InvalidArgument(f"{label(name)}: llama.cpp no longer has this sampler", param=label(name))
        target = RENAMED.get(name, name)
        if text and target not in _LISTS:
            if len(value) > 1:
                raise InvalidArgument(f"{label(name)} is given {len(value)} times", param=label(name))
            value = value[0]
        elif target in _LISTS and isinstance(value, str):
            value = [value]
        if value is not None:
            fields[target] = value
    try:
        return msgspec.convert(fields, PresetParameters, strict=not text)
    except msgspec.ValidationError as exc:
        message, _, path = str(exc).partition(" - at `$.")
        name = re.match(r"\w*", path).group()  # type: ignore[union-attr]
        ollama = {v: k for k, v in RENAMED.items()}.get(name, name)
        raise InvalidArgument(f"{label(ollama)}: {message.replace(' | null', '')}", param=label(ollama)) from None


# ---------------------------------------------------------------------- writing


def _escaped(value: str) -> str:
    """``value`` in double quotes, with the escapes ``_value`` reads back."""
    for char, escape in (("\\", "\\\\"), ('"', '\\"'), ("\n", "\\n"), ("\t", "\\t"), ("\r", "\\r")):
        value = value.replace(char, escape)
    return f'"{value}"'


def _quoted(value: str) -> str:
    """Triple quotes keep a template or a system prompt readable; escaped quotes when they cannot hold it."""
    return f'"""{value}"""' if '"""' not in value and not value.endswith('"') else _escaped(value)


def _literal(value: Any) -> str:
    """A parameter's value as Ollama shows it: strings in quotes, numbers bare."""
    return _escaped(value) if isinstance(value, str) else f"{value}"


def parameter_lines(defaults: Mapping[str, Any]) -> list[str]:
    """``name value`` per parameter (one line per stop string), by Ollama's names: /api/show's ``parameters``."""
    ollama = {v: k for k, v in RENAMED.items()}
    return [f"{ollama.get(name, name)} {_literal(item)}" for name, value in defaults.items()
            for item in (value if isinstance(value, (list, tuple)) else [value])]


def render(name: str, preset: PresetSettings, parameters_text: str) -> str:
    """A Modelfile that makes ``preset`` again (``parse(render(...)).preset()`` is the same preset)."""
    lines = [f"# Modelfile generated by mullama for {name}", f"FROM {preset.from_}"]
    if preset.template is not None:
        lines.append(f"TEMPLATE {_quoted(preset.template)}")
    if preset.system is not None:
        lines.append(f"SYSTEM {_quoted(preset.system)}")
    lines += [f"PARAMETER {line}" for line in parameters_text.splitlines()]
    lines += [f"ADAPTER {a.name}" + ("" if a.scale == 1.0 else f" {a.scale:g}") for a in preset.adapters]
    lines += [f"MESSAGE {m.role} {_quoted(m.content)}" for m in preset.messages]
    if preset.license is not None:
        lines.append(f"LICENSE {_quoted(preset.license)}")
    return "\n".join(lines) + "\n"
