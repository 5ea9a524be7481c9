"""read_header: values from tiny and real GGUFs, the gguf package's reader as an oracle, and hostile bytes."""

from __future__ import annotations

import os
import struct
from pathlib import Path

import gguf
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import gguf_factory
from mullama import assets
from mullama.errors import CorruptModelFile, InvalidModelFile, ModelFileNotFound
from mullama.gguf_header import GgufHeader, parameters_label, read_header

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

        def __enter__(self) -> "Counting":
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


# ---------------------------------------------------------------- fuzz (issue 6 will widen this)


@pytest.fixture(scope="module")
def fuzz_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fuzz")


@pytest.fixture(scope="module")
def seed_file(fuzz_dir: Path) -> tuple[bytes, int]:
    """A tiny valid GGUF and where its header ends (flips go there: that is where the parsing is)."""
    spec = gguf_factory.TinySpec(n_layer=1, n_embd=32, n_head=2, n_head_kv=2, n_ff=32)
    path = gguf_factory.write_tiny_llama(fuzz_dir / "seed.gguf", spec)
    return path.read_bytes(), gguf_factory.data_offset(path)


def _check_only_typed_errors(path: Path, data: bytes) -> None:
    path.write_bytes(data)
    try:
        read_header(path)
    except InvalidModelFile:  # CorruptModelFile included
        pass


FUZZ = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@FUZZ
@given(data=st.binary(max_size=512))
def test_fuzz_random_bytes(fuzz_dir: Path, data: bytes) -> None:
    _check_only_typed_errors(fuzz_dir / "random.gguf", data)


@FUZZ
@given(data=st.binary(max_size=256))
def test_fuzz_random_bytes_after_a_valid_preamble(fuzz_dir: Path, data: bytes) -> None:
    _check_only_typed_errors(fuzz_dir / "preamble.gguf", b"GGUF" + struct.pack("<I", 3) + data)


@FUZZ
@given(st.data())
def test_fuzz_truncations_and_bit_flips(fuzz_dir: Path, seed_file: tuple[bytes, int],
                                        data: st.DataObject) -> None:
    raw, header_end = bytearray(seed_file[0]), seed_file[1]
    flips = data.draw(st.lists(st.tuples(st.integers(0, header_end - 1), st.integers(0, 7)), max_size=6))
    for pos, bit in flips:
        raw[pos] ^= 1 << bit
    cut = data.draw(st.one_of(st.just(len(raw)), st.integers(0, len(raw))))
    _check_only_typed_errors(fuzz_dir / "flipped.gguf", bytes(raw[:cut]))
