"""A byte-level GGUF writer for hand-built (mostly bad) files, shared by the read_header tests."""

from __future__ import annotations

import struct
from pathlib import Path

import gguf

VT = gguf.GGUFValueType
F32 = int(gguf.GGMLQuantizationType.F32)


def gstr(text: str | bytes) -> bytes:
    raw = text.encode() if isinstance(text, str) else text
    return struct.pack("<Q", len(raw)) + raw


def kv(key: str, vtype: int, payload: bytes) -> bytes:
    return gstr(key) + struct.pack("<I", vtype) + payload


def kv_s(key: str, value: str) -> bytes:
    return kv(key, VT.STRING, gstr(value))


def kv_u32(key: str, value: int) -> bytes:
    return kv(key, VT.UINT32, struct.pack("<I", value))


def tinfo(name: str | bytes, dims: list[int], ttype: int = F32, offset: int = 0) -> bytes:
    return (gstr(name) + struct.pack("<I", len(dims)) + b"".join(struct.pack("<q", d) for d in dims)
            + struct.pack("<IQ", ttype, offset))


def build(kvs: list[bytes], tensors: list[bytes], *, data: int = 16, version: int = 3,
          counts: tuple[int, int] | None = None, magic: bytes = b"GGUF") -> bytes:
    n_t, n_kv = counts if counts is not None else (len(tensors), len(kvs))
    head = magic + struct.pack("<IQQ", version, n_t, n_kv) + b"".join(kvs) + b"".join(tensors)
    return head + b"\0" * (-len(head) % 32) + b"\0" * data


ARCH = kv_s("general.architecture", "llama")
NORM = tinfo("blk.0.attn_norm.weight", [4])


def minimal() -> bytes:
    """A valid GGUF: one KV, one 4-element F32 tensor."""
    return build([ARCH], [NORM])


def write(tmp_path: Path, data: bytes, name: str = "m.gguf") -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


PREAMBLE_1KV = b"GGUF" + struct.pack("<IQQ", 3, 0, 1)  # version 3, no tensors, one KV
