"""read_header: values from tiny and real GGUFs, the gguf package's reader as an oracle, and hostile bytes."""

from __future__ import annotations

import os
import struct
import time
import tracemalloc
from pathlib import Path
from typing import Self

import gguf
import gguf_factory
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mullama import assets
from mullama.errors import CorruptModelFile, InvalidModelFile, ModelFileNotFound
from mullama.gguf_header import (
    MAX_ARRAY_STRINGS,
    MAX_KEY,
    MAX_KEY_BYTES,
    MAX_KV,
    MAX_NAME,
    MAX_TENSORS,
    GgufHeader,
    parameters_label,
    read_header,
)

VT = gguf.GGUFValueType
F32 = int(gguf.GGMLQuantizationType.F32)


# ---------------------------------------------------------------- a byte-level GGUF writer for bad files


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


# ---------------------------------------------------------------- good files


def test_minimal_hand_built(tmp_path: Path) -> None:
    h = read_header(write(tmp_path, minimal()))
    assert (h.architecture, h.parameters, h.n_layer, h.layer_bytes) == ("llama", 4, 1, (16,))
    assert (h.input_bytes, h.output_bytes, h.quantization, h.n_vocab) == (0, 0, "F32", None)
    assert h.has_chat_template is False and h.name is None


@pytest.mark.parametrize("dtype,quant", [("f32", "F32"), ("f16", "F16")])
def test_tiny_factory_model(tmp_path: Path, dtype: str, quant: str) -> None:
    spec = gguf_factory.TinySpec(dtype=dtype)
    path = gguf_factory.write_tiny_llama(tmp_path / "tiny.gguf", spec, name="x" * 500)
    h = read_header(path)
    assert h.architecture == "llama" and h.quantization == quant
    assert (h.n_layer, h.n_embd, h.n_head, h.n_head_kv, h.context_length) == (2, 64, 4, 4, 512)
    assert h.parameters == spec.n_params and h.n_vocab == gguf_factory.N_VOCAB
    assert h.has_chat_template and len(h.layer_bytes) == 2 and h.layer_bytes[0] == h.layer_bytes[1]
    wsize = 2 if dtype == "f16" else 4
    assert h.input_bytes == gguf_factory.N_VOCAB * 64 * wsize
    assert h.output_bytes == gguf_factory.N_VOCAB * 64 * wsize + 64 * 4  # output.weight + output_norm
    assert h.name == "x" * 200 and h.metadata["general.name"] == "x" * 200  # strings cut to 200
    assert h.metadata["tokenizer.ggml.tokens"] == f"[{gguf_factory.N_VOCAB} items]"
    assert h.metadata["llama.block_count"] == 2
    hash(h)  # frozen and hashable despite the metadata dict


def test_agrees_with_gguf_reader(tmp_path: Path) -> None:
    path = gguf_factory.write_tiny_llama(tmp_path / "t.gguf", gguf_factory.TinySpec(n_layer=3, dtype="f16"))
    ref = gguf.GGUFReader(str(path))
    h = read_header(path)
    assert h.parameters == sum(int(t.n_elements) for t in ref.tensors)
    assert sum(h.layer_bytes) + h.input_bytes + h.output_bytes == sum(int(t.n_bytes) for t in ref.tensors)
    assert set(h.metadata) == {k for k in ref.fields if not k.startswith("GGUF.")}


def test_real_smollm2_header() -> None:
    target = assets.cache_dir() / "models" / assets.SMOLLM2_135M_Q4_1.filename
    if not target.exists():  # never download from a unit test
        pytest.skip("bundled SmolLM2 model is not in the cache")
    path = assets.default_model_path()
    h = read_header(path)
    assert (h.architecture, h.quantization, h.n_layer, h.context_length) == ("llama", "Q4_1", 30, 8192)
    assert (h.n_embd, h.n_head, h.n_head_kv, h.n_vocab) == (576, 9, 3, 49152)
    assert h.parameters == 134_515_008 and parameters_label(h.parameters) == "135M"
    assert h.basename == "smollm2" and h.size_label == "135M" and h.has_chat_template
    # tied embeddings: no output.weight, so the output side is just output_norm (576 F32)
    assert h.output_bytes == 576 * 4 and len(set(h.layer_bytes)) == 1
    ref = gguf.GGUFReader(str(path))
    assert sum(h.layer_bytes) + h.input_bytes + h.output_bytes == sum(int(t.n_bytes) for t in ref.tensors)
    assert h.metadata["tokenizer.ggml.merges"] == "[48900 items]"


def test_reads_only_the_header_of_a_big_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from mullama import gguf_header

    path = gguf_factory.write_tiny_llama(tmp_path / "big.gguf")
    header_end = gguf_factory.data_offset(path)
    os.truncate(path, 4 << 30)  # 4 GiB, sparse: the weights are never read
    read: list[int] = []
    real_open = gguf_header._open

    class Counting:
        def __init__(self, fh: object) -> None:
            self._fh = fh

        def __enter__(self) -> Self:
            return self

        def __exit__(self, *exc: object) -> None:
            self._fh.close()  # type: ignore[attr-defined]

        def seek(self, pos: int) -> int:
            return self._fh.seek(pos)  # type: ignore[attr-defined,no-any-return]

        def read(self, n: int) -> bytes:
            data = self._fh.read(n)  # type: ignore[attr-defined]
            read.append(len(data))
            return data  # type: ignore[no-any-return]

    def counting_open(p: Path) -> tuple[Counting, int]:
        fh, size = real_open(p)
        return Counting(fh), size

    monkeypatch.setattr(gguf_header, "_open", counting_open)
    h = read_header(path)
    assert h.n_layer == 2 and sum(read) <= header_end + (1 << 20)


def test_quantization_falls_back_to_the_heaviest_tensor_type(tmp_path: Path) -> None:
    q8 = int(gguf.GGMLQuantizationType.Q8_0)
    tensors = [tinfo("token_embd.weight", [64, 2], q8, 0), tinfo("output_norm.weight", [4], F32, 160)]
    data = build([ARCH], tensors, data=200)
    h = read_header(write(tmp_path, data))
    assert h.quantization == "Q8_0" and h.input_bytes == 2 * 2 * 34 and h.output_bytes == 16
    assert h.n_layer == 0 and h.layer_bytes == ()
    guessed = build([ARCH, kv_u32("general.file_type", 1024)], [tinfo("output_norm.weight", [4])])
    assert read_header(write(tmp_path, guessed, "g.gguf")).quantization == "F32"


def test_per_layer_head_counts_and_block_count_beyond_tensors(tmp_path: Path) -> None:
    heads = kv("llama.attention.head_count_kv", VT.ARRAY, struct.pack("<IQ3I", VT.UINT32, 3, 2, 8, 0))
    data = build([ARCH, kv_u32("llama.block_count", 3), heads], [NORM])
    h = read_header(write(tmp_path, data))
    assert h.n_head_kv == 8 and h.n_layer == 3 and h.layer_bytes == (16, 0, 0)
    assert h.metadata["llama.attention.head_count_kv"] == "[3 items]"


def test_split_parts_are_merged(tmp_path: Path) -> None:
    w = gguf.GGUFWriter(str(tmp_path / "s.gguf"), "llama", split_max_tensors=2)
    w.add_block_count(2)
    w.add_file_type(gguf.LlamaFileType.ALL_F32)
    names = ["token_embd.weight", "blk.0.attn_norm.weight", "blk.1.attn_norm.weight", "output.weight"]
    for n in names:
        w.add_tensor(n, np.ones(8, dtype=np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    parts = sorted(tmp_path.glob("s-*-of-*.gguf"))
    assert len(parts) == 2
    h = read_header(parts[0], parts=parts)
    assert h.parameters == 32 and h.layer_bytes == (32, 32) and h.input_bytes == h.output_bytes == 32
    assert read_header(parts[0]).parameters == 16
    with pytest.raises(InvalidModelFile, match="general.architecture"):
        read_header(parts[1])  # later parts carry only the split.* keys


@pytest.mark.parametrize("n,label", [
    (0, "0"), (999, "999"), (1_000, "1K"), (1_500, "1.5K"), (999_999, "1M"), (134_515_008, "135M"),
    (360_000_000, "360M"), (7_241_732_096, "7.2B"), (8_030_261_248, "8B"), (70_553_706_496, "70.6B"),
    (1_500_000_000_000, "1.5T"),
])
def test_parameters_label(n: int, label: str) -> None:
    assert parameters_label(n) == label


# ---------------------------------------------------------------- bad files


PREAMBLE_1KV = b"GGUF" + struct.pack("<IQQ", 3, 0, 1)  # version 3, no tensors, one KV


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
    from mullama import gguf_header

    def boom(cur: object) -> None:
        raise ZeroDivisionError("bug")

    monkeypatch.setattr(gguf_header, "_parse", boom)
    with pytest.raises(CorruptModelFile, match="ZeroDivisionError"):
        read_header(write(tmp_path, minimal()))


def test_is_a_frozen_dataclass() -> None:
    assert GgufHeader.__dataclass_params__.frozen  # type: ignore[attr-defined]


# ---------------------------------------------------------------- fuzz: no crash, no hang, bounded memory
#
# Every example is read once against a clock (under FUZZ_SECONDS: no hang) and, when that was
# quick, once more under tracemalloc (peak under FUZZ_MEMORY: the reader holds a 1 MiB read
# buffer and short prefixes of strings). tracemalloc makes the longest legal header -- 4M empty
# vocabulary strings in a sparse file -- fifty times slower, so slow examples skip the traced run;
# test_string_arrays_take_constant_memory and the slow test_the_caps_bound_time_and_memory cover
# them. Within the caps a header costs at most ~1 s of parsing on the 2-core CI box; the bound
# leaves room for a loaded machine.

FUZZ_MEMORY = 8 << 20
FUZZ_SECONDS = 5.0
TRACE_UNDER_S = 0.2
FUZZ = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@pytest.fixture(scope="module")
def fuzz_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fuzz")


@pytest.fixture(scope="module")
def seed_file(fuzz_dir: Path) -> tuple[bytes, int]:
    """A tiny valid GGUF and where its header ends (flips go there: that is where the parsing is)."""
    spec = gguf_factory.TinySpec(n_layer=1, n_embd=32, n_head=2, n_head_kv=2, n_ff=32)
    path = gguf_factory.write_tiny_llama(fuzz_dir / "seed.gguf", spec)
    return path.read_bytes(), gguf_factory.data_offset(path)


def _measured(path: Path, *, trace: bool) -> tuple[float, int]:
    """read_header(path) -> (seconds, peak bytes allocated or 0 untraced); only typed errors may escape."""
    if trace:
        tracemalloc.start()
    t0 = time.perf_counter()
    try:
        read_header(path)
    except InvalidModelFile:  # CorruptModelFile included
        pass
    finally:
        elapsed = time.perf_counter() - t0
        peak = tracemalloc.get_traced_memory()[1] if trace else 0
        if trace:
            tracemalloc.stop()
    return elapsed, peak


def _check_bounded(path: Path, data: bytes, sparse_size: int | None = None) -> None:
    """Write ``data`` (then extend it with a sparse hole to ``sparse_size``) and read it within bounds."""
    path.write_bytes(data)
    if sparse_size is not None and sparse_size > len(data):
        os.truncate(path, sparse_size)  # a huge file of zeros that costs nothing: every length check passes
    size = path.stat().st_size
    elapsed, _ = _measured(path, trace=False)
    assert elapsed < FUZZ_SECONDS, f"{elapsed:.2f} s on {len(data)} bytes (file of {size})"
    if elapsed < TRACE_UNDER_S:
        _, peak = _measured(path, trace=True)
        assert peak < FUZZ_MEMORY, f"{peak} bytes allocated on {len(data)} bytes (file of {size})"


@FUZZ
@given(data=st.binary(max_size=512))
def test_fuzz_random_bytes(fuzz_dir: Path, data: bytes) -> None:
    _check_bounded(fuzz_dir / "random.gguf", data)


@FUZZ
@given(data=st.binary(max_size=256))
def test_fuzz_random_bytes_after_a_valid_preamble(fuzz_dir: Path, data: bytes) -> None:
    _check_bounded(fuzz_dir / "preamble.gguf", b"GGUF" + struct.pack("<I", 3) + data)


@FUZZ
@given(st.data())
def test_fuzz_truncations_and_bit_flips(fuzz_dir: Path, seed_file: tuple[bytes, int],
                                        data: st.DataObject) -> None:
    raw, header_end = bytearray(seed_file[0]), seed_file[1]
    flips = data.draw(st.lists(st.tuples(st.integers(0, header_end - 1), st.integers(0, 7)), max_size=6))
    for pos, bit in flips:
        raw[pos] ^= 1 << bit
    cut = data.draw(st.one_of(st.just(len(raw)), st.integers(0, len(raw))))
    _check_bounded(fuzz_dir / "flipped.gguf", bytes(raw[:cut]))


# crafted headers: the structure is right, the numbers are hostile

U64_EDGES = [0, 1, 2, 63, 64, 255, 4096, MAX_KV, MAX_KV + 1, MAX_TENSORS, MAX_TENSORS + 1, MAX_KEY, MAX_KEY + 1,
             MAX_ARRAY_STRINGS, MAX_ARRAY_STRINGS + 1, 2**31 - 1, 2**31, 2**32 - 1, 2**32, 2**40, 2**62,
             2**63 - 1, 2**63, 2**64 - 1]
u64s = st.one_of(st.sampled_from(U64_EDGES), st.integers(0, 2**64 - 1))
u32s = st.one_of(st.sampled_from([0, 1, 4, 5, 8, 9, 12, 13, 99, 2**31, 2**32 - 1]), st.integers(0, 2**32 - 1))
i64s = st.one_of(st.sampled_from([-(2**63), -1, 0, 1, 32, 2**31, 2**62, 2**63 - 1]), st.integers(-(2**63), 2**63 - 1))
value_types = st.one_of(st.sampled_from([int(t) for t in VT]), u32s)
names = st.one_of(st.binary(max_size=70), st.sampled_from([b"general.architecture", b"general.alignment",
                                                          b"llama.block_count", b"tokenizer.ggml.tokens"]))


@st.composite
def kv_items(draw: st.DrawFn) -> bytes:
    key = draw(names)
    key_len = draw(st.one_of(st.just(len(key)), u64s))
    vtype = draw(value_types)
    if vtype == VT.STRING:
        text = draw(st.binary(max_size=16))
        payload = struct.pack("<Q", draw(st.one_of(st.just(len(text)), u64s))) + text
    elif vtype == VT.ARRAY:
        itype = draw(value_types)
        items = draw(st.binary(max_size=32))
        payload = struct.pack("<IQ", itype, draw(u64s)) + items
    else:
        payload = draw(st.binary(max_size=8))
    return struct.pack("<Q", key_len) + key + struct.pack("<I", vtype) + payload


@st.composite
def tensor_infos(draw: st.DrawFn) -> bytes:
    name = draw(st.binary(max_size=70))
    n_dims = draw(st.one_of(st.integers(0, 5), u32s))
    dims = draw(st.lists(i64s, max_size=min(n_dims, 5)))
    head = struct.pack("<Q", draw(st.one_of(st.just(len(name)), u64s))) + name + struct.pack("<I", n_dims)
    return head + b"".join(struct.pack("<q", d) for d in dims) + struct.pack("<IQ", draw(u32s), draw(u64s))


@st.composite
def crafted_headers(draw: st.DrawFn) -> bytes:
    version = draw(st.sampled_from([2, 3, 3, 3, 1, 4, 2**32 - 1]))
    kvs = draw(st.lists(kv_items(), max_size=4))
    infos = draw(st.lists(tensor_infos(), max_size=3))
    n_tensors = draw(st.one_of(st.just(len(infos)), u64s))
    n_kv = draw(st.one_of(st.just(len(kvs)), u64s))
    return b"GGUF" + struct.pack("<IQQ", version, n_tensors, n_kv) + b"".join(kvs) + b"".join(infos)


@FUZZ
@given(data=crafted_headers(), sparse=st.sampled_from([None, 1 << 20, 1 << 30, 1 << 40]))
def test_fuzz_crafted_headers_with_huge_counts_and_lengths(fuzz_dir: Path, data: bytes, sparse: int | None) -> None:
    _check_bounded(fuzz_dir / "crafted.gguf", data, sparse)


def _string_array(tmp_path: Path, count: int) -> Path:
    path = write(tmp_path, PREAMBLE_1KV + kv("x", VT.ARRAY, struct.pack("<IQ", VT.STRING, count)), f"s{count}.gguf")
    os.truncate(path, path.stat().st_size + 8 * count)  # ``count`` empty strings (zeros)
    return path


def test_string_arrays_take_constant_memory(tmp_path: Path) -> None:
    _, small = _measured(_string_array(tmp_path, 1_000), trace=True)
    _, large = _measured(_string_array(tmp_path, 100_000), trace=True)
    assert large < small + (64 << 10), (small, large)


def test_the_caps_are_enforced(tmp_path: Path) -> None:
    over = PREAMBLE_1KV + kv("x", VT.ARRAY, struct.pack("<IQ", VT.STRING, MAX_ARRAY_STRINGS + 1))
    with pytest.raises(CorruptModelFile, match="implausible string arrays"):
        read_header(write(tmp_path, over + b"\0" * (8 * MAX_ARRAY_STRINGS + 8), "over.gguf"))
    two = [kv(k, VT.ARRAY, struct.pack("<IQ", VT.STRING, MAX_ARRAY_STRINGS // 2 + 1)) for k in ("a", "b")]
    data = b"GGUF" + struct.pack("<IQQ", 3, 0, 2) + two[0] + b"\0" * 8 * (MAX_ARRAY_STRINGS // 2 + 1) + two[1]
    with pytest.raises(CorruptModelFile, match="implausible string arrays: .* up to 'b'"):  # counted per file
        read_header(write(tmp_path, data + b"\0" * (8 * MAX_ARRAY_STRINGS), "two.gguf"))
    over = build([ARCH], [NORM], counts=(MAX_TENSORS + 1, 1), data=32 * MAX_TENSORS * 4)
    with pytest.raises(CorruptModelFile, match="implausible counts"):
        read_header(write(tmp_path, over, "over-tensors.gguf"))
    keys = [kv(f"{i:08d}".ljust(MAX_KEY, "k"), VT.UINT8, b"\1") for i in range(MAX_KEY_BYTES // MAX_KEY + 1)]
    with pytest.raises(CorruptModelFile, match="implausible metadata"):
        read_header(write(tmp_path, build(keys, []), "keys.gguf"))
    zeroed = PREAMBLE_1KV[:-16] + struct.pack("<QQ", MAX_TENSORS, 1) + ARCH
    path = write(tmp_path, zeroed, "zeroed.gguf")
    os.truncate(path, 1 << 30)  # 65536 all-zero tensor infos: the second one is a duplicate, at once
    t0 = time.perf_counter()
    with pytest.raises(CorruptModelFile, match="duplicate tensor name ''"):
        read_header(path)
    assert time.perf_counter() - t0 < 1.0


@pytest.mark.slow
def test_the_caps_bound_time_and_memory(tmp_path: Path) -> None:
    """The most work a header can ask for within the caps: all the strings, then all the tensors."""
    path = _string_array(tmp_path, MAX_ARRAY_STRINGS)
    with pytest.raises(InvalidModelFile, match="general.architecture"):  # parsed to the end
        read_header(path)
    elapsed, _ = _measured(path, trace=False)
    assert elapsed < 20, elapsed
    infos = [tinfo(f"blk.{i}.w".ljust(MAX_NAME - 1, "x"), [1, 1, 1, 1], offset=32 * i) for i in range(MAX_TENSORS)]
    path = write(tmp_path, build([ARCH], infos, data=32 * MAX_TENSORS), "tensors.gguf")
    assert read_header(path).parameters == MAX_TENSORS
    elapsed, _ = _measured(path, trace=False)
    _, peak = _measured(path, trace=True)
    assert elapsed < 20 and peak < 64 << 20, (elapsed, peak)  # ~17 MiB of tensor records
