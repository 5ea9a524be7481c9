"""Threads: the engine releases the GIL, and closing things mid-generation raises, never crashes."""

from __future__ import annotations

import threading

import pytest

from helpers import cpu_params, ctx_params, greedy
from mullama import engine
from mullama.core.errors import EngineClosed

PROMPT = [1, 259, 264, 107, 263]


def test_parallel_contexts_on_one_model_match_sequential(tiny_model):
    with engine.Context(tiny_model, ctx_params(n_ctx=256)) as ctx:
        reference = ctx.generate(tiny_model, [PROMPT], [greedy(32, ignore_eos=True)])[0].tokens

    results: dict[int, list[int]] = {}
    errors: list[BaseException] = []

    def worker(k: int) -> None:
        try:
            with engine.Context(tiny_model, ctx_params(n_ctx=256)) as ctx:
                results[k] = ctx.generate(tiny_model, [PROMPT], [greedy(32, ignore_eos=True)])[0].tokens
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors
    assert all(not t.is_alive() for t in threads)
    assert results == {k: reference for k in range(4)}


def test_closing_the_context_from_on_token_raises_engine_closed(tiny_model):
    ctx = engine.Context(tiny_model, ctx_params(n_ctx=256))

    def on_token(index, token, text):
        ctx.close()

    with pytest.raises(EngineClosed):
        ctx.generate(tiny_model, [PROMPT], [greedy(8, ignore_eos=True)], on_token=on_token)
    assert ctx.closed


def _generate_while(close, tiny_path):
    """Run a generation in a thread; call ``close(model, ctx)`` from the main thread after its first token."""
    model = engine.Model(str(tiny_path), cpu_params())
    ctx = engine.Context(model, ctx_params(n_ctx=256))
    first_token = threading.Event()
    closed = threading.Event()
    outcome: dict[str, object] = {}

    def on_token(index, token, text):
        first_token.set()
        closed.wait(timeout=30)

    def worker():
        try:
            outcome["result"] = ctx.generate(
                model, [PROMPT], [greedy(64, ignore_eos=True)], on_token=on_token
            )[0]
        except BaseException as exc:  # noqa: BLE001 - inspected by the caller
            outcome["error"] = exc

    thread = threading.Thread(target=worker)
    thread.start()
    assert first_token.wait(timeout=60)
    close(model, ctx)
    closed.set()
    thread.join(timeout=60)
    assert not thread.is_alive(), "generation did not finish after the close"
    ctx.close()
    model.close()
    return outcome


def test_closing_the_context_from_another_thread_stops_generation(tiny_path):
    outcome = _generate_while(lambda model, ctx: ctx.close(), tiny_path)
    assert isinstance(outcome.get("error"), EngineClosed)


def test_closing_the_model_from_another_thread_is_safe(tiny_path):
    outcome = _generate_while(lambda model, ctx: model.close(), tiny_path)
    # Either the context (which owns the weights) finishes, or the closed model is reported.
    if "error" in outcome:
        assert isinstance(outcome["error"], EngineClosed)
    else:
        assert len(outcome["result"].tokens) == 64


def test_decode_releases_the_gil(tiny_model):
    """A Python thread keeps running while another thread generates."""
    ticks = 0
    done = threading.Event()

    def ticker():
        nonlocal ticks
        while not done.is_set():
            ticks += 1
            done.wait(0.001)

    t = threading.Thread(target=ticker)
    t.start()
    try:
        with engine.Context(tiny_model, ctx_params(n_ctx=256)) as ctx:
            ctx.generate(tiny_model, [PROMPT], [greedy(64, ignore_eos=True)])
    finally:
        done.set()
        t.join()
    assert ticks > 0
