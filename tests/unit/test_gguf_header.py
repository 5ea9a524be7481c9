"""read_header on good files: values from tiny and real GGUFs, the gguf package's reader as an oracle."""

from __future__ import annotations

import os
import struct
from pathlib import Path
from typing import Self

import gguf
import gguf_factory
import numpy as np
import pytest
from gguf_bytes import ARCH, F32, NORM, VT, build, kv, kv_u32, minimal, tinfo, write

from mullama.core.errors import InvalidModelFile
from mullama.models import assets
from mullama.models.gguf_header import parameters_label, read_header


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
    from mullama.models import gguf_parse

    path = gguf_factory.write_tiny_llama(tmp_path / "big.gguf")
    header_end = gguf_factory.data_offset(path)
    os.truncate(path, 4 << 30)  # 4 GiB, sparse: the weights are never read
    read: list[int] = []
    real_open = gguf_parse._open

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

    monkeypatch.setattr(gguf_parse, "_open", counting_open)
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
