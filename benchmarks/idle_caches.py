#!/usr/bin/env python3
"""Idle caches in the shared KV cache against parked in host memory, with the batcher alone (no HTTP).

One stream of sequential chat requests (32-64 random words, 128 tokens out, ``ignore_eos``) through a
Batcher of 8 slots with idle caches left in the KV cache (``cache_ram`` 0), the same with them parked in
host memory (``set_cache_ram``), and a Batcher of 1 slot, alternating round by round. Prints each
configuration's decode tok/s (after the first token) and prefill ms per prompt token, medians over the
requests after the first two.

    python benchmarks/idle_caches.py [--rounds 2] [--requests 14] [--threads 2]
"""

from __future__ import annotations

import argparse
import os
import random
import select
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from mullama import _engine, engine
from mullama.models.assets import default_model_path

WORDS = ["the", "quick", "brown", "fox", "jumps", "over", "a", "lazy", "dog", "near", "river", "mountain", "city",
         "music", "light", "stone", "water", "garden", "winter", "summer", "road", "window", "bread", "story"]
CONFIGS = (("8 slots, idle caches in the KV cache", 8, 0), ("8 slots, parked in host memory", 8, 8 << 30),
           ("1 slot", 1, 0))


def one(batcher: _engine.Batcher, rid: str, tokens: list[int], params: engine.GenerateParams) -> _engine.Event:
    batcher.submit(rid, tokens, params)
    while True:
        if select.select([batcher.event_fd], [], [], 0.5)[0]:
            os.read(batcher.event_fd, 8)
        for ev in batcher.drain():
            if ev.done:
                return ev


def measure(model: engine.Model, n_seq: int, cache_ram: int, a: argparse.Namespace, seed: int) -> tuple[float, float]:
    rnd = random.Random(seed)
    params = engine.GenerateParams(max_tokens=128, ignore_eos=True, sampling=engine.SamplingParams())
    cp = engine.ContextParams(n_ctx=8192, n_threads=a.threads, n_threads_batch=a.threads, n_seq_max=n_seq,
                              flash_attn="on")
    with engine.Context(model, cp) as ctx:
        batcher = _engine.Batcher(model, ctx, 20.0)
        batcher.set_cache_ram(cache_ram)
        decode, prefill = [], []
        for i in range(a.requests):
            words = " ".join(rnd.choice(WORDS) for _ in range(rnd.randint(32, 64)))
            text = f"<|im_start|>user\n{words}<|im_end|>\n<|im_start|>assistant\n"
            s = one(batcher, f"r{i}", model.tokenize(text, True, True), params).stats
            decode.append((s.completion_tokens - 1) / s.decode_ms * 1000)
            prefill.append(s.prefill_ms / max(1, s.prompt_tokens))
        batcher.stop()
        del batcher  # its claim on the context goes with it
    return statistics.median(decode[2:]), statistics.median(prefill[2:])


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--requests", type=int, default=14)
    p.add_argument("--threads", type=int, default=2)
    a = p.parse_args()
    with engine.Model(str(default_model_path())) as model:
        for r in range(a.rounds):
            for name, n_seq, cache_ram in CONFIGS if r % 2 == 0 else CONFIGS[::-1]:
                d, pf = measure(model, n_seq, cache_ram, a, seed=r)
                print(f"round {r + 1}: {name}: decode {d:.1f} tok/s, prefill {pf:.2f} ms a prompt token", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
