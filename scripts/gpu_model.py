#!/usr/bin/env python3
"""A model of the bundled SmolLM2's exact shape for a GPU box that cannot have its weights.

The GPU check (scripts/gpu_check.sh) runs on a machine that reaches no package index or model hub,
and what travels there is capped well below the 92 MB of SmolLM2 Q4_1. So the model goes as its
metadata and tokenizer (a tensor-less GGUF of ~2 MB, plus the tensor list) and comes back there with
random weights of the same shapes: the same architecture, vocabulary, chat template and cost per
token, which is what a throughput comparison and the placement and memory tests need. Its text is
noise; nothing there judges text.

    python scripts/gpu_model.py skeleton SRC.gguf DIR     # here: DIR/skeleton.gguf + DIR/tensors.json
    python scripts/gpu_model.py weights DIR OUT.gguf      # there: random F16/F32 weights of those shapes
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import gguf
import numpy as np


def copy_metadata(reader: gguf.GGUFReader, writer: gguf.GGUFWriter, skip: tuple[str, ...] = ()) -> None:
    """Every key-value field but the header's own and the architecture (the writer sets those)."""
    for key, field in reader.fields.items():
        if key.startswith("GGUF.") or key == "general.architecture" or key in skip:
            continue
        vtype = gguf.GGUFValueType(field.types[0])
        sub = gguf.GGUFValueType(field.types[1]) if vtype == gguf.GGUFValueType.ARRAY else None
        writer.add_key_value(key, field.contents(), vtype, sub_type=sub)


def skeleton(src: Path, out: Path) -> None:
    reader = gguf.GGUFReader(str(src))
    arch = str(reader.fields["general.architecture"].contents())
    writer = gguf.GGUFWriter(str(out / "skeleton.gguf"), arch)
    copy_metadata(reader, writer)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.close()
    tensors = [[t.name, [int(x) for x in t.shape]] for t in reader.tensors]
    (out / "tensors.json").write_text(json.dumps({"architecture": arch, "tensors": tensors}))


def weights(src: Path, out: Path, seed: int = 0) -> None:
    reader = gguf.GGUFReader(str(src / "skeleton.gguf"))
    spec = json.loads((src / "tensors.json").read_text())
    writer = gguf.GGUFWriter(str(out), spec["architecture"])
    copy_metadata(reader, writer, skip=("general.file_type",))
    writer.add_file_type(gguf.LlamaFileType.MOSTLY_F16)
    rng = np.random.default_rng(seed)
    for name, shape in spec["tensors"]:
        dims = list(reversed(shape))  # GGUF lists ne0 first; numpy wants the slowest dimension first
        if len(dims) == 1:  # norms: ones, as a trained model's start
            writer.add_tensor(name, np.ones(dims, dtype=np.float32))
        else:
            writer.add_tensor(name, (rng.standard_normal(dims, dtype=np.float32) * 0.02).astype(np.float16))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    a = sub.add_parser("skeleton")
    a.add_argument("src", type=Path)
    a.add_argument("dir", type=Path)
    b = sub.add_parser("weights")
    b.add_argument("dir", type=Path)
    b.add_argument("out", type=Path)
    args = ap.parse_args(argv)
    if args.cmd == "skeleton":
        args.dir.mkdir(parents=True, exist_ok=True)
        skeleton(args.src, args.dir)
    else:
        weights(args.dir, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
