"""Bounded parsing of a GGUF file's header: its KV pairs and tensor infos, never the weights.

Why a reader of our own rather than ``gguf.GGUFReader``: the catalog parses every model file in the
models directories, including hostile or half-written ones, and must be fast on multi-GB files.
``GGUFReader`` builds one numpy view per array element (1.7 s for the 98 MB SmolLM2, most of it
the 49k-token vocabulary) and loops without end on an array whose count runs past the end of the
file (a 50-byte file with a count of 10**7 took 68 s). This reader walks the same layout with
``struct`` over a small read buffer, skips array and string payloads by seeking, checks every
length against the bytes left, and mirrors the checks of llama.cpp's ``gguf_init_from_file``
(ggml/src/gguf.cpp) so a file listed as fine is one llama.cpp will at least open. The ``gguf``
package still supplies the tables: value types, tensor types and their block sizes, file types.

Memory is bounded by the read buffer plus the short prefixes of strings it keeps; time is bounded
by the header's size (each element read advances by at least one byte) and, because a sparse file
makes a huge header cheap, by caps on what a header may hold: KV pairs, tensors and the strings of
all its string arrays together (a vocabulary of 4M tokens is 16 times the largest there is).
"""

from __future__ import annotations

import math
import os
import stat
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import gguf

from mullama.core.errors import CorruptModelFile, InvalidModelFile, ModelFileNotFound

MAGIC = b"GGUF"
VERSIONS = (2, 3)
MAX_NAME = 64  # GGML_MAX_NAME: llama.cpp refuses tensor names of this length or longer
MAX_DIMS = 4  # GGML_MAX_DIMS
MAX_KEY = 1 << 16  # the spec's limit for one key; no real key comes close
MAX_KEY_BYTES = 1 << 20  # all keys together (real files: a few KB)
MAX_KV = 1 << 14  # real files hold under 100 KV pairs ...
MAX_TENSORS = 1 << 16  # ... and a few thousand tensors; these caps bound time and memory on hostile counts
MAX_ARRAY_STRINGS = 1 << 22  # strings in all string arrays of one file (vocab + merges: under 1M)
STRING_KEEP = 200  # characters of a string value kept in ``metadata``
TEMPLATE_KEY = "tokenizer.chat_template"
MAX_TEMPLATE = 1 << 20  # bytes of the chat template kept whole (``GgufHeader.chat_template``)
NUMERIC_ARRAY_KEEP = 4096  # per-layer arrays (head counts) up to this length are kept for the shape
_CHUNK = 1 << 20
_MIN_KV = 8 + 4 + 1  # key length, value type, one byte of value
_MIN_TENSOR_INFO = 8 + 4 + 4 + 8  # name length, n_dims, type, offset
_PREAMBLE = 4 + 4 + 8 + 8  # magic, version, n_tensors, n_kv
_INT64_MAX = (1 << 63) - 1

_VT = gguf.GGUFValueType
_SCALARS: dict[int, struct.Struct] = {
    _VT.UINT8: struct.Struct("<B"), _VT.INT8: struct.Struct("<b"),
    _VT.UINT16: struct.Struct("<H"), _VT.INT16: struct.Struct("<h"),
    _VT.UINT32: struct.Struct("<I"), _VT.INT32: struct.Struct("<i"),
    _VT.UINT64: struct.Struct("<Q"), _VT.INT64: struct.Struct("<q"),
    _VT.FLOAT32: struct.Struct("<f"), _VT.FLOAT64: struct.Struct("<d"),
    _VT.BOOL: struct.Struct("<?"),
}
_U32, _U64, _I64 = struct.Struct("<I"), struct.Struct("<Q"), struct.Struct("<q")
_DIMS = tuple(struct.Struct(f"<{n}q") for n in range(MAX_DIMS + 1))
_TYPE_OFFSET = struct.Struct("<IQ")
_TYPE_SIZES = {int(t): sizes for t, sizes in gguf.GGML_QUANT_SIZES.items()}  # type -> (block, bytes per block)

Scalar = str | int | float | bool


@dataclass(frozen=True)
class _Tensor:
    name: str
    type: int
    n_elements: int
    n_bytes: int


@dataclass(frozen=True)
class _Raw:
    """One file's KVs and tensor infos, before they become a header (a split model has several)."""

    metadata: dict[str, Scalar]
    numeric_arrays: dict[str, tuple[int | float, ...]]
    array_lengths: dict[str, int]
    tensors: tuple[_Tensor, ...]


class _Cursor:
    """Reads forward through an open file with bounds checks; never holds more than one chunk."""

    def __init__(self, fh: BinaryIO, size: int, path: Path) -> None:
        self._fh = fh
        self.size = size
        self.path = path
        self.pos = 0
        self._buf = b""
        self._buf_at = 0
        self.array_strings = 0  # strings met in string arrays so far (capped by MAX_ARRAY_STRINGS)

    def corrupt(self, what: str) -> CorruptModelFile:
        return CorruptModelFile(f"{self.path}: corrupt GGUF: {what}")

    def left(self) -> int:
        return self.size - self.pos

    def take(self, n: int, what: str) -> bytes:
        if n < 0 or n > self.left():
            raise self.corrupt(f"truncated while reading {what} at byte {self.pos} ({self.size} in the file)")
        start = self.pos - self._buf_at
        if start < 0 or start + n > len(self._buf):
            self._fh.seek(self.pos)
            self._buf = self._fh.read(max(n, _CHUNK))
            self._buf_at, start = self.pos, 0
            if len(self._buf) < n:
                raise self.corrupt(f"file shrank while reading {what} at byte {self.pos}")
        self.pos += n
        return self._buf[start:start + n]

    def skip(self, n: int, what: str) -> None:
        if n < 0 or n > self.left():
            raise self.corrupt(f"{what} at byte {self.pos} runs {n} bytes past a file of {self.size} bytes")
        self.pos += n

    def skip_strings(self, count: int, what: str) -> None:
        """Skip ``count`` length-prefixed strings (a vocabulary): the hot loop, straight off the buffer."""
        unpack, size = _U64.unpack_from, self.size
        for j in range(count):
            start = self.pos - self._buf_at
            if 0 <= start and start + 8 <= len(self._buf):
                n = unpack(self._buf, start)[0]
                self.pos += 8
            else:
                n = self.u64(f"length of item {j} of {what}")
            if n > size - self.pos:
                raise self.corrupt(f"item {j} of {what} at byte {self.pos} runs {n} bytes past a file of "
                                   f"{size} bytes")
            self.pos += n

    def unpack(self, st: struct.Struct, what: str) -> int | float | bool:
        return st.unpack(self.take(st.size, what))[0]  # type: ignore[no-any-return]

    def u32(self, what: str) -> int:
        return int(self.unpack(_U32, what))

    def u64(self, what: str) -> int:
        return int(self.unpack(_U64, what))

    def string(self, what: str, limit: int | None = None, keep: int = STRING_KEEP * 4) -> str:
        """A length-prefixed string; only its first ``keep`` bytes are read, the rest is skipped."""
        n = self.u64(f"length of {what}")
        if limit is not None and n > limit:
            raise self.corrupt(f"{what} is {n} bytes long (limit {limit})")
        if n > self.left():
            raise self.corrupt(f"{what} at byte {self.pos} claims {n} bytes, {self.left()} left in the file")
        head = self.take(min(n, keep), what)
        self.skip(n - len(head), what)
        return head.decode("utf-8", errors="replace")


def _open(path: Path) -> tuple[BinaryIO, int]:
    """Open a regular file without blocking (a FIFO named *.gguf must not hang the scan)."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    except (FileNotFoundError, NotADirectoryError) as exc:
        raise ModelFileNotFound(f"{path}: model file not found") from exc
    except IsADirectoryError as exc:
        raise ModelFileNotFound(f"{path}: is a directory, not a model file") from exc
    except PermissionError as exc:
        raise ModelFileNotFound(f"{path}: cannot read the model file (permission denied)") from exc
    except (OSError, ValueError) as exc:  # ValueError: NUL in the path
        raise ModelFileNotFound(f"{path}: cannot open the model file: {exc}") from exc
    try:
        st = os.fstat(fd)
        if stat.S_ISDIR(st.st_mode):
            raise ModelFileNotFound(f"{path}: is a directory, not a model file")
        if not stat.S_ISREG(st.st_mode):
            raise ModelFileNotFound(f"{path}: not a regular file")
        return os.fdopen(fd, "rb", buffering=0), st.st_size
    except BaseException:
        os.close(fd)
        raise


def _read_raw(path: Path) -> _Raw:
    try:
        fh, size = _open(path)
        with fh:
            return _parse(_Cursor(fh, size, path))
    except (InvalidModelFile, ModelFileNotFound):
        raise
    except OSError as exc:
        raise InvalidModelFile(f"{path}: I/O error while reading the GGUF header: {exc}") from exc


def _parse(cur: _Cursor) -> _Raw:
    path = cur.path
    if cur.size < 4 or cur.take(4, "magic") != MAGIC:
        raise InvalidModelFile(f"{path}: not a GGUF file (bad magic)")
    if cur.size < _PREAMBLE:
        raise cur.corrupt(f"file of {cur.size} bytes is shorter than the GGUF preamble")
    version = cur.u32("version")
    if version & 0xFFFF == 0 and version:
        raise InvalidModelFile(f"{path}: GGUF of the other byte order (version field {version:#x})")
    if version not in VERSIONS:
        raise InvalidModelFile(f"{path}: GGUF version {version} is not supported (only 2 and 3)")
    n_tensors, n_kv = cur.u64("tensor count"), cur.u64("KV count")
    if n_tensors * _MIN_TENSOR_INFO + n_kv * _MIN_KV > cur.left():
        raise cur.corrupt(f"{n_tensors} tensors and {n_kv} KV pairs cannot fit in a file of {cur.size} bytes")
    if n_tensors > MAX_TENSORS or n_kv > MAX_KV:
        raise cur.corrupt(f"implausible counts: {n_tensors} tensors (at most {MAX_TENSORS}), "
                          f"{n_kv} KV pairs (at most {MAX_KV})")

    metadata: dict[str, Scalar] = {}
    numeric: dict[str, tuple[int | float, ...]] = {}
    lengths: dict[str, int] = {}
    alignment_type = -1
    key_bytes = 0
    for i in range(n_kv):
        key = cur.string(f"key of KV pair {i}", limit=MAX_KEY, keep=MAX_KEY)
        if not key:
            raise cur.corrupt(f"key of KV pair {i} is empty")
        key_bytes += len(key)
        if key_bytes > MAX_KEY_BYTES:
            raise cur.corrupt(f"implausible metadata: the first {i + 1} keys hold {key_bytes} bytes "
                              f"(at most {MAX_KEY_BYTES})")
        if key in metadata:
            raise cur.corrupt(f"duplicate key {key!r}")
        vtype = cur.u32(f"type of {key!r}")
        if key == "general.alignment":
            alignment_type = vtype
        if vtype == _VT.ARRAY:
            itype, count = cur.u32(f"item type of {key!r}"), cur.u64(f"length of {key!r}")
            lengths[key] = count
            metadata[key] = f"[{count} items]"
            values = _read_array(cur, key, itype, count)
            if values is not None:
                numeric[key] = values
        else:
            metadata[key] = _read_scalar(cur, key, vtype)

    alignment = gguf.GGUF_DEFAULT_ALIGNMENT
    if "general.alignment" in metadata:
        if alignment_type != _VT.UINT32:
            raise cur.corrupt("general.alignment is not a uint32")
        alignment = int(metadata["general.alignment"])
        if alignment <= 0 or alignment & (alignment - 1):
            raise cur.corrupt(f"general.alignment {alignment} is not a power of two")

    infos, names = [], set()
    for i in range(n_tensors):
        info = _read_tensor_info(cur, i)
        if info[0] in names:  # as soon as it is seen: a run of zeroed infos fails at the second
            raise cur.corrupt(f"duplicate tensor name {info[0]!r}")
        names.add(info[0])
        infos.append(info)
    data_start = -(-cur.pos // alignment) * alignment
    expected = 0
    tensors = []
    for name, ttype, n_elements, n_bytes, offset in infos:
        if offset != expected:
            raise cur.corrupt(f"tensor {name!r} has data offset {offset}, expected {expected}")
        end = data_start + offset + n_bytes
        if end > cur.size:
            raise cur.corrupt(
                f"truncated: tensor {name!r} ends at byte {end} but the file has only {cur.size} bytes"
            )
        expected += -(-n_bytes // alignment) * alignment
        tensors.append(_Tensor(name, ttype, n_elements, n_bytes))
    return _Raw(metadata, numeric, lengths, tuple(tensors))


def _read_scalar(cur: _Cursor, key: str, vtype: int) -> Scalar:
    if vtype == _VT.STRING:
        if key == TEMPLATE_KEY:  # kept whole; ``_build`` cuts the metadata copy short
            return cur.string(f"value of {key!r}", keep=MAX_TEMPLATE)
        text = cur.string(f"value of {key!r}")
        return text[:STRING_KEEP]
    st = _SCALARS.get(vtype)
    if st is None:
        raise cur.corrupt(f"key {key!r} has unknown value type {vtype}")
    value = cur.unpack(st, f"value of {key!r}")
    return value


def _read_array(cur: _Cursor, key: str, itype: int, count: int) -> tuple[int | float, ...] | None:
    """Skip an array's payload; return its values when it is a short numeric one (per-layer counts)."""
    if itype == _VT.STRING:
        if count * 8 > cur.left():
            raise cur.corrupt(f"array {key!r} of {count} strings cannot fit in the {cur.left()} bytes left")
        cur.array_strings += count
        if cur.array_strings > MAX_ARRAY_STRINGS:
            raise cur.corrupt(f"implausible string arrays: {cur.array_strings} strings up to {key!r} "
                              f"(at most {MAX_ARRAY_STRINGS})")
        cur.skip_strings(count, repr(key))
        return None
    st = _SCALARS.get(itype)
    if st is None:  # nested arrays and unknown types: llama.cpp refuses them too
        raise cur.corrupt(f"array {key!r} has invalid item type {itype}")
    if count * st.size > cur.left():
        raise cur.corrupt(f"array {key!r} of {count} items runs past the end of the file")
    if count <= NUMERIC_ARRAY_KEEP and itype not in (_VT.BOOL, _VT.FLOAT32, _VT.FLOAT64):
        raw = cur.take(count * st.size, f"array {key!r}")
        return tuple(v for (v,) in st.iter_unpack(raw))
    cur.skip(count * st.size, f"array {key!r}")
    return None


def _read_tensor_info(cur: _Cursor, i: int) -> tuple[str, int, int, int, int]:
    name = cur.string(f"name of tensor {i}", limit=MAX_NAME - 1, keep=MAX_NAME)
    n_dims = cur.u32(f"dimension count of {name!r}")
    if n_dims > MAX_DIMS:
        raise cur.corrupt(f"tensor {name!r} has {n_dims} dimensions (at most {MAX_DIMS})")
    dims = list(_DIMS[n_dims].unpack(cur.take(8 * n_dims, f"dimensions of {name!r}")))
    if any(d < 0 for d in dims):
        raise cur.corrupt(f"tensor {name!r} has a negative dimension {dims}")
    n_elements = math.prod(dims)
    if n_elements > _INT64_MAX:
        raise cur.corrupt(f"tensor {name!r} has too many elements {dims}")
    raw = cur.take(_TYPE_OFFSET.size, f"type and data offset of {name!r}")
    ttype, offset = _TYPE_OFFSET.unpack(raw)
    sizes = _TYPE_SIZES.get(ttype)
    if sizes is None:
        raise InvalidModelFile(f"{cur.path}: tensor {name!r} has unknown type {ttype}")
    block, type_size = sizes
    if (dims[0] if dims else 1) % block:
        raise cur.corrupt(f"tensor {name!r}: row of {dims[0]} is not a multiple of the block size {block}")
    return name, ttype, n_elements, n_elements // block * type_size, offset
