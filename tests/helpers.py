"""Helpers shared by the unit and integration tests (imported as ``helpers``)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

from mullama import engine

TESTS_DIR = Path(__file__).resolve().parent
REPO_ROOT = TESTS_DIR.parent
N_THREADS = 2  # the CI machine has 2 cores; every context uses both
MiB = 1024 * 1024


def ctx_params(**kw) -> engine.ContextParams:
    """ContextParams with the suite's defaults (2 threads, n_ctx 512) unless overridden."""
    kw.setdefault("n_threads", N_THREADS)
    kw.setdefault("n_threads_batch", N_THREADS)
    kw.setdefault("n_ctx", 512)
    return engine.ContextParams(**kw)


def cpu_params(**kw) -> engine.ModelParams:
    """ModelParams that keep every layer on the CPU."""
    kw.setdefault("n_gpu_layers", 0)
    return engine.ModelParams(**kw)


def greedy(max_tokens: int = 16, *, stop=(), ignore_eos: bool = False, **sampling) -> engine.GenerateParams:
    """GenerateParams with temperature 0 (argmax); extra keywords go to SamplingParams."""
    sampling.setdefault("temperature", 0.0)
    return engine.GenerateParams(
        max_tokens=max_tokens,
        stop=list(stop),
        ignore_eos=ignore_eos,
        sampling=engine.SamplingParams(**sampling),
    )


def run_isolated(code: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a fresh interpreter, for inputs that might crash the process.

    The snippet can ``import gguf_factory`` and ``from mullama import engine``.
    A crash shows as a negative returncode (-6 SIGABRT, -11 SIGSEGV).
    """
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(TESTS_DIR), str(REPO_ROOT), env.get("PYTHONPATH")) if p
    )
    env["GGML_NO_BACKTRACE"] = "1"  # no gdb backtrace from ggml's abort handler
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        cwd=str(TESTS_DIR),
    )


def describe(proc: subprocess.CompletedProcess[str]) -> str:
    """Exit status and output tail of an isolated run, for assertion messages."""
    how = f"killed by signal {-proc.returncode}" if proc.returncode < 0 else f"exit code {proc.returncode}"
    tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-8:])
    return f"{how}; output tail:\n{tail}"


def decode_prompt(ctx: engine.Context, tokens: list[int], seq: int = 0, start: int = 0) -> int:
    """Decode ``tokens`` on ``seq`` from ``start``, logits for the last one; returns that entry's index."""
    batch = engine.Batch(len(tokens), ctx.params.n_seq_max)
    last = -1
    for i, tok in enumerate(tokens):
        last = batch.add(tok, start + i, seq, i == len(tokens) - 1)
    ctx.decode(batch)
    return last


def greedy_continue(ctx: engine.Context, sampler: engine.Sampler, token: int, pos: int, n: int, seq: int = 0):
    """Feed ``token`` at ``pos`` and sample ``n`` tokens one at a time (low-level API)."""
    batch = engine.Batch(1, ctx.params.n_seq_max)
    out = []
    for _ in range(n):
        batch.clear()
        idx = batch.add(token, pos, seq, True)
        ctx.decode(batch)
        token = sampler.sample(ctx, idx)
        out.append(token)
        pos += 1
    return out
