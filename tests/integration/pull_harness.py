"""Shared by the pull tests: the names pulled, the local stand-in hub (``fake_hub.py``) serving the real
SmolLM2 bytes and a tiny split set, a store over it, and the environment of a ``mullama`` CLI pointed at it.

``hub`` (module scope), ``clean_hub`` (autouse: each test starts with no faults and an empty log) and
``models`` are fixtures: a test module imports them.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import gguf
import numpy as np
import pytest
from fake_hub import FakeHub
from supervisor_harness import REPO_ROOT

from mullama.store.hub import Hub
from mullama.store.store import Store

REPO = "test-org/SmolLM2-135M-Instruct-GGUF"
FILE = "SmolLM2-135M-Instruct-Q4_1.gguf"
NAME = "test-org/smollm2-135m-instruct-gguf:q4_1"
SERVED = "smollm2-135m-instruct:q4_1"
SPLIT_REPO = "test-org/Split-GGUF"


def write_split(folder: Path) -> dict[str, Path]:
    """A tiny llama GGUF split in 2 parts, named as the hub names split files."""
    folder.mkdir(parents=True, exist_ok=True)
    w = gguf.GGUFWriter(str(folder / "split-Q8_0.gguf"), "llama", split_max_tensors=2)
    w.add_block_count(2)
    w.add_context_length(256)
    w.add_file_type(gguf.LlamaFileType.MOSTLY_Q8_0)
    w.add_tensor("token_embd.weight", np.ones((8, 4), dtype=np.float32))
    for i in range(2):
        w.add_tensor(f"blk.{i}.attn_norm.weight", np.ones(4, dtype=np.float32))
    w.add_tensor("output_norm.weight", np.ones(4, dtype=np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    parts = sorted(folder.glob("split-Q8_0-*.gguf"))
    assert len(parts) == 2, parts
    return {p.name: p for p in parts}


@pytest.fixture(scope="module")
def hub(smollm_path: Path, tmp_path_factory) -> Iterator[FakeHub]:
    split = write_split(tmp_path_factory.mktemp("split"))
    with FakeHub(
        {REPO: {FILE: smollm_path, "SmolLM2-135M-Instruct-Q8_0-renamed.gguf": smollm_path}, SPLIT_REPO: split}
    ) as h:
        yield h


@pytest.fixture(autouse=True)
def clean_hub(request) -> Iterator[None]:
    if "hub" in request.fixturenames:
        h = request.getfixturevalue("hub")
        h.faults = type(h.faults)()
        h.log.clear()
    yield


@pytest.fixture
def models(tmp_path: Path) -> Path:
    return tmp_path / "models"


def store(hub: FakeHub, models: Path, *, token: str | None = None, retries: int = 3, emit=None) -> Store:
    return Store([models], Hub(hub.url, token), retries=retries, emit=emit)


def final_path(models: Path) -> Path:
    return models / "smollm2-135m-instruct" / FILE


def cli_env(hub: FakeHub) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MULLAMA_", "HF_"))}
    env.update(HF_ENDPOINT=hub.url, PYTHONPATH=str(REPO_ROOT), TERM="xterm-256color", COLUMNS="120")
    return env

