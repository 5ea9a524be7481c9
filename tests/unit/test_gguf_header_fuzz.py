"""read_header under fuzzing and at its caps: no crash, no hang, bounded memory."""

from __future__ import annotations

import os
import struct
import time
import tracemalloc
from pathlib import Path

import gguf_factory
import pytest
from gguf_bytes import ARCH, NORM, PREAMBLE_1KV, VT, build, kv, tinfo, write
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mullama.core.errors import CorruptModelFile, InvalidModelFile
from mullama.models.gguf_header import read_header
from mullama.models.gguf_parse import (
    MAX_ARRAY_STRINGS,
    MAX_KEY,
    MAX_KEY_BYTES,
    MAX_KV,
    MAX_NAME,
    MAX_TENSORS,
)

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
