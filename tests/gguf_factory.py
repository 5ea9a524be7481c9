"""Tiny GGUF files written at test time with the ``gguf`` package.

``write_tiny_llama`` makes a random-weight "llama" model that llama.cpp loads
in milliseconds: 2 layers, n_embd 64, 4 heads, an SPM ("llama") vocabulary of
<unk>, <s>, </s>, the 256 byte tokens <0x00>..<0xFF> and a few word pieces.
Weights come from a seeded numpy RNG, so the same arguments give the same file.

The other helpers write broken files for the error paths: not a GGUF at all,
a valid GGUF cut inside its header or inside its tensor data, and a GGUF whose
``general.architecture`` llama.cpp does not know.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import gguf
import numpy as np

#: Word pieces after the byte tokens; "\u2581" is SentencePiece's space marker.
_PIECES = [
    "\u2581",
    "\u2581the",
    "\u2581a",
    "\u2581of",
    "e",
    "t",
    "a",
    "o",
    "n",
    "s",
    "\u2581yes",
    "\u2581no",
]

CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)


@dataclass(frozen=True)
class TinySpec:
    """Shape of a tiny llama model (defaults: 2 layers, n_embd 64, 4 heads)."""

    n_layer: int = 2
    n_embd: int = 64
    n_head: int = 4
    n_head_kv: int = 4
    n_ff: int = 128
    n_ctx_train: int = 512
    dtype: str = "f32"  # "f32" or "f16" for the 2-D weights (norms stay f32)
    seed: int = 0

    @property
    def head_dim(self) -> int:
        return self.n_embd // self.n_head

    @property
    def n_params(self) -> int:
        """Parameters in the written tensors (embeddings, untied output, norms, layers)."""
        e, ff, kv = self.n_embd, self.n_ff, self.head_dim * self.n_head_kv
        per_layer = 2 * e + 2 * e * e + 2 * kv * e + 3 * e * ff
        return 2 * N_VOCAB * e + e + self.n_layer * per_layer


def tiny_vocab() -> tuple[list[str], list[float], list[int]]:
    """Tokens, scores and token types of the tiny SPM vocabulary."""
    tokens = ["<unk>", "<s>", "</s>"]
    types = [gguf.TokenType.UNKNOWN, gguf.TokenType.CONTROL, gguf.TokenType.CONTROL]
    for b in range(256):
        tokens.append(f"<0x{b:02X}>")
        types.append(gguf.TokenType.BYTE)
    tokens += _PIECES
    types += [gguf.TokenType.NORMAL] * len(_PIECES)
    scores = [0.0] * 3 + [0.0] * 256 + [-float(i + 1) for i in range(len(_PIECES))]
    return tokens, scores, [int(t) for t in types]


N_VOCAB = len(tiny_vocab()[0])


def _add_vocab(w: gguf.GGUFWriter, chat_template: str | None, extra_tokens: Sequence[str] = ()) -> None:
    tokens, scores, types = tiny_vocab()
    tokens += list(extra_tokens)  # user-defined: whole tokens wherever they appear (e.g. "<think>")
    scores += [0.0] * len(extra_tokens)
    types += [int(gguf.TokenType.USER_DEFINED)] * len(extra_tokens)
    w.add_tokenizer_model("llama")
    w.add_token_list(tokens)
    w.add_token_scores(scores)
    w.add_token_types(types)
    w.add_unk_token_id(0)
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    w.add_add_bos_token(True)
    w.add_add_eos_token(False)
    if chat_template is not None:
        w.add_chat_template(chat_template)


def _tensors(spec: TinySpec, n_vocab: int = N_VOCAB) -> dict[str, np.ndarray]:
    """numpy arrays in numpy order (GGUF ne is the reverse: ne0 = last axis)."""
    rng = np.random.default_rng(spec.seed)
    wdt = np.float16 if spec.dtype == "f16" else np.float32
    e, ff = spec.n_embd, spec.n_ff
    kv = spec.head_dim * spec.n_head_kv

    def mat(rows: int, cols: int) -> np.ndarray:
        return (rng.standard_normal((rows, cols)) * (1.0 / np.sqrt(cols))).astype(wdt)

    def norm(n: int) -> np.ndarray:
        return (1.0 + 0.01 * rng.standard_normal(n)).astype(np.float32)

    out: dict[str, np.ndarray] = {
        "token_embd.weight": mat(n_vocab, e),
        "output_norm.weight": norm(e),
        "output.weight": mat(n_vocab, e),
    }
    for i in range(spec.n_layer):
        out[f"blk.{i}.attn_norm.weight"] = norm(e)
        out[f"blk.{i}.attn_q.weight"] = mat(e, e)
        out[f"blk.{i}.attn_k.weight"] = mat(kv, e)
        out[f"blk.{i}.attn_v.weight"] = mat(kv, e)
        out[f"blk.{i}.attn_output.weight"] = mat(e, e)
        out[f"blk.{i}.ffn_norm.weight"] = norm(e)
        out[f"blk.{i}.ffn_gate.weight"] = mat(ff, e)
        out[f"blk.{i}.ffn_up.weight"] = mat(ff, e)
        out[f"blk.{i}.ffn_down.weight"] = mat(e, ff)
    return out


def write_tiny_llama(
    path: str | os.PathLike[str],
    spec: TinySpec = TinySpec(),
    *,
    arch: str = "llama",
    chat_template: str | None = CHATML_TEMPLATE,
    name: str = "tiny-random-llama",
    extra_tokens: Sequence[str] = (),
) -> Path:
    """Write a random-weight llama GGUF (or one labelled ``arch``) and return its path; ``extra_tokens``
    join the vocabulary as user-defined tokens (a template's tags, e.g. ``<think>``)."""
    path = Path(path)
    w = gguf.GGUFWriter(str(path), arch)
    w.add_name(name)
    w.add_type("model")
    w.add_context_length(spec.n_ctx_train)
    w.add_embedding_length(spec.n_embd)
    w.add_block_count(spec.n_layer)
    w.add_feed_forward_length(spec.n_ff)
    w.add_head_count(spec.n_head)
    w.add_head_count_kv(spec.n_head_kv)
    w.add_rope_dimension_count(spec.head_dim)
    w.add_rope_freq_base(10000.0)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_vocab_size(N_VOCAB + len(extra_tokens))
    w.add_file_type(gguf.LlamaFileType.MOSTLY_F16 if spec.dtype == "f16" else gguf.LlamaFileType.ALL_F32)
    _add_vocab(w, chat_template, extra_tokens)
    for tname, arr in _tensors(spec, N_VOCAB + len(extra_tokens)).items():
        w.add_tensor(tname, arr)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


def write_unknown_arch(path: str | os.PathLike[str], arch: str = "nosucharch") -> Path:
    """A well-formed GGUF whose general.architecture llama.cpp does not know."""
    return write_tiny_llama(path, arch=arch, name="unknown-arch")


def write_not_gguf(path: str | os.PathLike[str], kind: str = "random", size: int = 4096) -> Path:
    """A file that is not GGUF: ``kind`` "random" (seeded bytes), "text" or "empty"."""
    path = Path(path)
    if kind == "random":
        data = np.random.default_rng(1234).integers(0, 256, size, dtype=np.uint8).tobytes()
        if data[:4] == b"GGUF":  # astronomically unlikely, but keep the helper honest
            data = b"XXXX" + data[4:]
    elif kind == "text":
        data = (b"this is a plain text file, not a GGUF model\n" * (size // 44 + 1))[:size]
    elif kind == "empty":
        data = b""
    else:
        raise ValueError(f"unknown kind {kind!r}")
    path.write_bytes(data)
    return path


def data_offset(path: str | os.PathLike[str]) -> int:
    """Byte offset where the tensor data of a GGUF starts (end of header, KV and tensor infos)."""
    return int(gguf.GGUFReader(str(path)).data_offset)


def write_truncated(src: str | os.PathLike[str], dst: str | os.PathLike[str], where: str = "data") -> Path:
    """Copy of ``src`` cut short.

    ``where``: "data" cuts halfway through the tensor data; "header" cuts halfway
    through the metadata (KV pairs / tensor infos); "magic" keeps only 10 bytes
    (the magic and part of the version/counts).
    """
    src, dst = Path(src), Path(dst)
    raw = src.read_bytes()
    off = data_offset(src)
    if where == "data":
        cut = off + (len(raw) - off) // 2
    elif where == "header":
        cut = off // 2
    elif where == "magic":
        cut = 10
    else:
        raise ValueError(f"unknown truncation {where!r}")
    assert 0 < cut < len(raw)
    dst.write_bytes(raw[:cut])
    return dst


def write_lora(path: str | os.PathLike[str], base: str | os.PathLike[str], *, rank: int = 8, seed: int = 0,
               targets: Sequence[str] = ("attn_v", "ffn_down"), alpha: float = 16.0,
               std: float = 0.015) -> Path:
    """A random-weight LoRA adapter for the GGUF model ``base``, as llama.cpp's convert_lora_to_gguf writes one:
    ``general.type = adapter``, ``adapter.type = lora``, ``adapter.lora.alpha``, and for each target weight
    ``W`` (ggml shape [in, out]) the pair ``W.lora_a`` [in, rank] and ``W.lora_b`` [rank, out]."""
    reader = gguf.GGUFReader(str(base))
    arch = bytes(reader.fields["general.architecture"].parts[-1]).decode()
    rng = np.random.default_rng(seed)
    w = gguf.GGUFWriter(str(path), arch)
    w.add_string("general.type", "adapter")
    w.add_string("adapter.type", "lora")
    w.add_float32("adapter.lora.alpha", alpha)
    for t in reader.tensors:
        parts = t.name.split(".")
        if len(parts) != 4 or parts[0] != "blk" or parts[2] not in targets or parts[3] != "weight":
            continue
        n_in, n_out = (int(x) for x in t.shape[:2])  # ggml order: ne[0] (input), ne[1] (output)
        w.add_tensor(f"{t.name}.lora_a", rng.normal(0, std, (rank, n_in)).astype(np.float32))
        w.add_tensor(f"{t.name}.lora_b", rng.normal(0, std, (n_out, rank)).astype(np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return Path(path)


def write_imatrix(path: str | os.PathLike[str], model: str | os.PathLike[str], *, metadata: bool = True) -> Path:
    """An importance matrix for ``model`` in llama-imatrix's GGUF format: per 2-D weight (not the embeddings),
    the sum of squared input activations per column (``.in_sum2``) and the tokens seen (``.counts``), random;
    ``metadata=False`` leaves out the datasets and chunk keys the quantiser requires."""
    reader = gguf.GGUFReader(str(model))
    w = gguf.GGUFWriter(str(path), arch="imatrix")
    if metadata:
        w.add_array("imatrix.datasets", ["unit-test"])
        w.add_uint32("imatrix.chunk_count", 1)
        w.add_uint32("imatrix.chunk_size", 64)
    rng = np.random.default_rng(3)
    for t in reader.tensors:
        if len(t.shape) == 2 and t.name != "token_embd.weight":
            cols = int(t.shape[0])  # GGUF ne0: the input dimension
            w.add_tensor(f"{t.name}.in_sum2", (rng.random(cols) * 64).astype(np.float32))
            w.add_tensor(f"{t.name}.counts", np.array([64.0], dtype=np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return Path(path)
