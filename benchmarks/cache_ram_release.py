#!/usr/bin/env python3
"""How fast a runner gives parked prefix caches back when the supervisor lowers its limit, and whether the
memory really leaves the process (``Batcher.set_cache_ram``: the drop, then ``malloc_trim``).

Parks ``--prompts`` distinct chat prompts (long, so each state is several MB) through a Batcher of 8
slots on SmolLM2, then lowers the limit to half of what is parked, then to 0, and prints each call's
time, the bytes parked and the process's RSS after each (psutil).

    python benchmarks/cache_ram_release.py [--prompts 120] [--words 60] [--threads 2]
"""

from __future__ import annotations

import argparse
import os
import select
import sys
import time
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from mullama import _engine, engine
from mullama.models.assets import default_model_path

MiB = 1 << 20


def run(batcher: _engine.Batcher, rid: str, tokens: list[int]) -> None:
    batcher.submit(rid, tokens, engine.GenerateParams(max_tokens=1, sampling=engine.SamplingParams(temperature=0)))
    while True:
        if select.select([batcher.event_fd], [], [], 0.5)[0]:
            os.read(batcher.event_fd, 8)
        if any(ev.done for ev in batcher.drain()):
            return


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--prompts", type=int, default=120)
    p.add_argument("--words", type=int, default=60, help="words a prompt: 60 parks ~8 MB states, 6 ~1 MB ones")
    p.add_argument("--threads", type=int, default=2)
    a = p.parse_args()
    proc = psutil.Process()
    with engine.Model(str(default_model_path())) as model, engine.Context(model, engine.ContextParams(
            n_ctx=8192, n_threads=a.threads, n_threads_batch=a.threads, n_seq_max=8, flash_attn="on")) as ctx:
        batcher = _engine.Batcher(model, ctx, 20.0)
        batcher.set_cache_ram(8 << 30)
        rss0 = proc.memory_info().rss
        for i in range(a.prompts):
            words = " ".join(f"item{i}-{k}" for k in range(a.words))
            run(batcher, f"r{i}", model.tokenize(f"<|im_start|>user\nRepeat: {words}<|im_end|>\n", True, True))
        c = batcher.counters()
        print(f"parked: {c.parked_entries} caches, {c.parked_bytes / MiB:.0f} MiB; "
              f"RSS {rss0 / MiB:.0f} MiB before, {proc.memory_info().rss / MiB:.0f} MiB after")
        for limit in (c.parked_bytes // 2, 0):
            t = time.perf_counter()
            batcher.set_cache_ram(limit)
            ms = (time.perf_counter() - t) * 1000
            c = batcher.counters()
            print(f"set_cache_ram({limit / MiB:.0f} MiB): {ms:.1f} ms; parked {c.parked_entries} caches, "
                  f"{c.parked_bytes / MiB:.0f} MiB; RSS {proc.memory_info().rss / MiB:.0f} MiB")
        batcher.stop()
        del batcher
    return 0


if __name__ == "__main__":
    sys.exit(main())
