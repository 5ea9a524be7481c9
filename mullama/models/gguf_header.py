"""The header of a GGUF file: architecture, shape, quantisation and per-layer sizes, without the weights.

The bounded, hostile-file-safe parsing of the bytes (and why it is our own) lives in ``gguf_parse``;
this module turns what it read into a ``GgufHeader``.
"""

from __future__ import annotations

import collections
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import gguf

from mullama.core.errors import CorruptModelFile, InvalidModelFile, ModelFileNotFound
from mullama.models.gguf_parse import STRING_KEEP, TEMPLATE_KEY, Scalar, _Raw, _read_raw

_BLOCK = re.compile(r"^blk\.(\d+)\.")
_INPUT_TENSORS = ("token_embd.", "token_embd_norm.", "position_embd.", "token_types.")


@dataclass(frozen=True)
class GgufHeader:
    """What the catalog, ``mullama show`` and placement need to know about a model file."""

    architecture: str
    name: str | None
    basename: str | None
    size_label: str | None
    quantization: str  # "Q4_1", "Q8_0", "F16", ...
    parameters: int  # sum of the tensors' element counts
    context_length: int | None
    n_layer: int
    n_embd: int | None
    n_head: int | None
    n_head_kv: int | None
    n_vocab: int | None
    layer_bytes: tuple[int, ...]  # bytes of blk.{i}.* for i in range(n_layer)
    output_bytes: int  # non-block tensors that are not input-side (output.weight, output_norm.*, ...)
    input_bytes: int  # token_embd.* and other input-side tensors
    has_chat_template: bool
    metadata: dict[str, Scalar] = field(hash=False)  # scalar KVs; arrays as "[N items]"; strings cut short
    chat_template: str | None = field(default=None, hash=False)  # whole (up to MAX_TEMPLATE bytes)
    #: (name, bytes) of every tensor in file order (parts in order): what tensor overrides are matched against
    tensors: tuple[tuple[str, int], ...] = field(default=(), hash=False, repr=False)


def read_header(path: Path, *, parts: Sequence[Path] = ()) -> GgufHeader:
    """Parse the header of ``path`` (and of every file in ``parts`` for a split model).

    ``parts`` lists all files of a split model in order, ``path`` first; metadata comes from
    ``path``, tensor sizes are summed over all parts. Raises ModelFileNotFound (missing or
    unreadable), InvalidModelFile (not a GGUF, or a GGUF llama.cpp cannot serve) or
    CorruptModelFile (truncated or inconsistent), each naming the file -- and nothing else.
    """
    path = Path(path)
    files = [Path(p) for p in parts] or [path]
    if files[0] != path:
        files.insert(0, path)
    try:
        return _build(path, [_read_raw(p) for p in files])
    except (InvalidModelFile, ModelFileNotFound):
        raise
    except Exception as exc:  # a bug here must still not take the catalog down
        raise CorruptModelFile(f"{path}: cannot parse the GGUF header: {type(exc).__name__}: {exc}") from exc


def tensor_part(name: str) -> int | Literal["input", "output"]:
    """Where llama.cpp's placement counts a tensor: repeating block ``i`` (``blk.i.*``), the input layer
    (token embeddings and the like, kept on the host) or the output head (everything else)."""
    m = _BLOCK.match(name)
    if m:
        return int(m.group(1))
    return "input" if name.startswith(_INPUT_TENSORS) else "output"


def parameters_label(n: int) -> str:
    """``134_515_008`` -> ``"135M"``, ``7_241_732_096`` -> ``"7.2B"``, ``70_553_706_496`` -> ``"70.6B"``.

    One decimal below 100 of a unit, none from 100 up; a trailing ".0" is dropped ("8B").
    """
    value = float(n)
    for unit in ("", "K", "M", "B", "T"):
        if abs(value) < 1000 or unit == "T":
            text = f"{value:.1f}" if abs(value) < 100 and unit else f"{value:.0f}"
            if float(text) >= 1000 and unit != "T":
                value /= 1000
                continue
            return text.removesuffix(".0") + unit
        value /= 1000
    raise AssertionError("unreachable")

# ---------------------------------------------------------------- building


def _build(path: Path, raws: Sequence[_Raw]) -> GgufHeader:
    first = raws[0]
    md = first.metadata
    arch = md.get("general.architecture")
    if not isinstance(arch, str) or not arch:
        raise InvalidModelFile(f"{path}: GGUF has no general.architecture")

    def text(key: str) -> str | None:
        value = md.get(key)
        return value if isinstance(value, str) else None

    def count(key: str) -> int | None:
        value = md.get(key)
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        values = first.numeric_arrays.get(key)  # per-layer counts: the largest is what sizing needs
        return int(max(values)) if values else None

    tensors = [t for raw in raws for t in raw.tensors]
    blocks: dict[int, int] = collections.defaultdict(int)
    input_bytes = output_bytes = 0
    by_type: dict[int, int] = collections.Counter()
    for t in tensors:
        by_type[t.type] += t.n_bytes
        part = tensor_part(t.name)
        if part == "input":
            input_bytes += t.n_bytes
        elif part == "output":
            output_bytes += t.n_bytes
        else:
            blocks[part] += t.n_bytes
    block_count = count(f"{arch}.block_count") or 0
    n_layer = max([block_count, *(i + 1 for i in blocks)])
    if n_layer > 1 << 20:
        raise CorruptModelFile(f"{path}: corrupt GGUF: {n_layer} layers")
    n_vocab = count(f"{arch}.vocab_size") or first.array_lengths.get("tokenizer.ggml.tokens")
    return GgufHeader(
        architecture=arch,
        name=text("general.name"),
        basename=text("general.basename"),
        size_label=text("general.size_label"),
        quantization=_quantization(md.get("general.file_type"), by_type),
        parameters=sum(t.n_elements for t in tensors),
        context_length=count(f"{arch}.context_length"),
        n_layer=n_layer,
        n_embd=count(f"{arch}.embedding_length"),
        n_head=count(f"{arch}.attention.head_count"),
        n_head_kv=count(f"{arch}.attention.head_count_kv"),
        n_vocab=n_vocab,
        layer_bytes=tuple(blocks.get(i, 0) for i in range(n_layer)),
        output_bytes=output_bytes,
        input_bytes=input_bytes,
        has_chat_template=isinstance(md.get(TEMPLATE_KEY), str),
        metadata={k: v[:STRING_KEEP] if isinstance(v, str) else v for k, v in md.items()},
        chat_template=text(TEMPLATE_KEY),
        tensors=tuple((t.name, t.n_bytes) for t in tensors),
    )


def _quantization(file_type: object, by_type: dict[int, int]) -> str:
    """general.file_type's name (MOSTLY_Q4_1 -> Q4_1); else the tensor type holding the most bytes."""
    if isinstance(file_type, int) and not isinstance(file_type, bool):
        try:
            name = gguf.LlamaFileType(file_type).name
        except ValueError:
            name = "GUESSED"
        if name != "GUESSED":
            return name.removeprefix("MOSTLY_").removeprefix("ALL_")
    if not by_type:
        return "unknown"
    top = max(by_type.items(), key=lambda kv: (kv[1], -kv[0]))[0]
    return gguf.GGMLQuantizationType(top).name
