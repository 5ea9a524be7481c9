"""read_header on hostile bytes: every bad file is a typed error naming the path."""

from __future__ import annotations

import os
import struct
from pathlib import Path

import gguf
import gguf_factory
import pytest
from gguf_bytes import ARCH, NORM, PREAMBLE_1KV, VT, build, kv, kv_u32, minimal, tinfo, write

from mullama.core.errors import CorruptModelFile, InvalidModelFile, ModelFileNotFound
from mullama.models.gguf_header import GgufHeader, read_header


def _hostile_array() -> bytes:
    """The file that made gguf.GGUFReader loop for a minute: 10**7 uint8 items promised, none there."""
    return PREAMBLE_1KV + kv("x", VT.ARRAY, struct.pack("<IQ", VT.UINT8, 10**7))


BAD = [
    # (id, bytes, error, message fragment)
    ("empty", b"", InvalidModelFile, "bad magic"),
    ("text", b"hello, this is not a model\n" * 10, InvalidModelFile, "bad magic"),
    ("ggml-magic", b"lmgg" + b"\0" * 60, InvalidModelFile, "bad magic"),
    ("magic-only", b"GGUF", CorruptModelFile, "preamble"),
    ("version-1", build([ARCH], [NORM], version=1), InvalidModelFile, "version 1"),
    ("version-4", build([ARCH], [NORM], version=4), InvalidModelFile, "version 4"),
    ("big-endian", b"GGUF" + struct.pack(">IQQ", 3, 0, 0), InvalidModelFile, "byte order"),
    ("kv-count", build([ARCH], [NORM], counts=(1, 10**6)), CorruptModelFile, "cannot fit"),
    ("tensor-count", build([ARCH], [NORM], counts=(2**63, 1)), CorruptModelFile, "cannot fit"),
    ("kv-cap", build([ARCH], [NORM], counts=(1, 70_000), data=1_000_000), CorruptModelFile, "implausible"),
    ("hostile-array", _hostile_array(), CorruptModelFile, "past the end"),
    ("string-array", PREAMBLE_1KV + kv("x", VT.ARRAY, struct.pack("<IQ", VT.STRING, 2**40)), CorruptModelFile,
     "cannot fit"),
    ("nested-array", build([kv("x", VT.ARRAY, struct.pack("<IQIQ", VT.ARRAY, 1, VT.UINT8, 0))], []),
     CorruptModelFile, "invalid item type"),
    ("value-type", build([kv("x", 99, b"\0" * 8), ARCH], [NORM]), CorruptModelFile, "unknown value type 99"),
    ("string-too-long", build([kv("x", VT.STRING, struct.pack("<Q", 2**62))], []), CorruptModelFile,
     "claims"),
    ("dup-key", build([ARCH, ARCH], [NORM]), CorruptModelFile, "duplicate key"),
    ("empty-key", build([kv("", VT.UINT8, b"\1"), ARCH], [NORM]), CorruptModelFile, "empty"),
    ("dup-tensor", build([ARCH], [NORM, tinfo("blk.0.attn_norm.weight", [4], offset=32)]), CorruptModelFile,
     "duplicate tensor"),
    ("long-name", build([ARCH], [tinfo("t" * 64, [4])]), CorruptModelFile, "limit 63"),
    ("n-dims", build([ARCH], [tinfo("t", [1, 1, 1, 1, 1])]), CorruptModelFile, "5 dimensions"),
    ("neg-dim", build([ARCH], [tinfo("t", [-4])]), CorruptModelFile, "negative"),
    ("huge-dims", build([ARCH], [tinfo("t", [2**62, 2**62])]), CorruptModelFile, "too many elements"),
    ("tensor-type", build([ARCH], [tinfo("t", [4], ttype=999)]), InvalidModelFile, "unknown type 999"),
    ("block-size", build([ARCH], [tinfo("t", [33], ttype=int(gguf.GGMLQuantizationType.Q4_0))]),
     CorruptModelFile, "block size"),
    ("offset", build([ARCH], [tinfo("t", [4], offset=32)], data=64), CorruptModelFile, "expected 0"),
    ("data-past-end", build([ARCH], [tinfo("t", [400])]), CorruptModelFile, "truncated"),
    ("alignment", build([ARCH, kv_u32("general.alignment", 24)], [NORM]), CorruptModelFile, "power of two"),
    ("alignment-type", build([ARCH, kv("general.alignment", VT.UINT8, b"\x20")], [NORM]), CorruptModelFile,
     "uint32"),
    ("no-arch", build([], [NORM]), InvalidModelFile, "general.architecture"),
    ("arch-not-string", build([kv_u32("general.architecture", 1)], [NORM]), InvalidModelFile,
     "general.architecture"),
]


@pytest.mark.parametrize("data,error,fragment", [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_bad_bytes(tmp_path: Path, data: bytes, error: type[Exception], fragment: str) -> None:
    path = write(tmp_path, data)
    with pytest.raises(error) as info:
        read_header(path)
    assert fragment in str(info.value) and str(path) in str(info.value)
    if error is InvalidModelFile:
        assert not isinstance(info.value, CorruptModelFile)


@pytest.mark.parametrize("where", ["magic", "header", "data"])
def test_truncated_factory_files(tmp_path: Path, where: str) -> None:
    good = gguf_factory.write_tiny_llama(tmp_path / "good.gguf")
    cut = gguf_factory.write_truncated(good, tmp_path / "cut.gguf", where)
    with pytest.raises(CorruptModelFile, match="cut.gguf"):
        read_header(cut)


@pytest.mark.parametrize("kind", ["random", "text", "empty"])
def test_not_gguf_factory_files(tmp_path: Path, kind: str) -> None:
    path = gguf_factory.write_not_gguf(tmp_path / "x.gguf", kind)
    with pytest.raises(InvalidModelFile) as info:
        read_header(path)
    assert not isinstance(info.value, CorruptModelFile)


def test_filesystem_errors(tmp_path: Path) -> None:
    with pytest.raises(ModelFileNotFound, match="not found"):
        read_header(tmp_path / "missing.gguf")
    with pytest.raises(ModelFileNotFound, match="directory"):
        read_header(tmp_path)
    with pytest.raises(ModelFileNotFound):
        read_header(tmp_path / "a\0b.gguf")
    fifo = tmp_path / "fifo.gguf"
    os.mkfifo(fifo)
    with pytest.raises(ModelFileNotFound, match="not a regular file"):
        read_header(fifo)  # opened non-blocking: no writer, no hang


def test_unexpected_bug_becomes_a_typed_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from mullama.models import gguf_parse

    def boom(cur: object) -> None:
        raise ZeroDivisionError("bug")

    monkeypatch.setattr(gguf_parse, "_parse", boom)
    with pytest.raises(CorruptModelFile, match="ZeroDivisionError"):
        read_header(write(tmp_path, minimal()))


def test_is_a_frozen_dataclass() -> None:
    assert GgufHeader.__dataclass_params__.frozen  # type: ignore[attr-defined]
