"""The runner's load state machine over HTTP: fit -> alloc -> commit -> close,
the health states on the way, and the error path of every op."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from runner_harness import Client, assert_error, greedy, load_params, model_path, running, split_stream

ORDER = {"starting": 0, "loading": 1, "warming": 2, "ready": 3}


@pytest.fixture(scope="module")
def runner(tmp_path_factory):
    with running(tmp_path_factory.mktemp("runner-lifecycle")) as r:
        yield r


@pytest.fixture(autouse=True)
def _closed_after(runner):
    """Every test starts and ends with an empty runner (status starting)."""
    yield
    if runner.alive():
        runner.load("close")
        assert runner.health()["status"] == "starting"


def test_health_states_through_fit_alloc_commit_close(runner):
    h = runner.health()
    assert h == {"status": "starting", "progress": 0.0, "error": None, "phase": "", "model": None, "loop_stalled_ms": 0.0}

    # fit measures, it does not load: the state does not move
    _, fit = runner.load("fit", **load_params())
    assert fit["op"] == "fit" and fit["status"] == "starting"
    assert fit["n_ctx"] == 4096 and fit["n_layer"] > 0 and fit["devices"]
    assert runner.health() == h

    # watch /health while alloc and commit run: progress only goes up, within [0, 1]
    seen: list[dict] = []
    stop = threading.Event()

    def poll():
        while not stop.is_set():
            seen.append(runner.health())
            time.sleep(0.02)

    poller = threading.Thread(target=poll, daemon=True)
    poller.start()
    try:
        _, alloc = runner.load("alloc", **load_params(warmup=True))
        assert alloc["op"] == "alloc" and alloc["status"] == "loading"
        assert alloc["n_ctx"] == 4096 and alloc["n_layer"] == fit["n_layer"]
        assert alloc["duration_ms"] > 0
        h = runner.health()
        assert h["status"] == "loading" and h["phase"] == "allocated"
        assert h["progress"] == pytest.approx(0.5)
        assert h["model"] == model_path() and h["error"] is None
        _, commit = runner.load("commit")
    finally:
        stop.set()
        poller.join(15)
    assert commit["op"] == "commit" and commit["status"] == "ready"
    seen.append(runner.health())
    assert seen[-1] == {"status": "ready", "progress": 1.0, "error": None, "phase": "", "model": model_path(), "loop_stalled_ms": 0.0}
    progress = [s["progress"] for s in seen]
    assert all(0.0 <= p <= 1.0 for p in progress), progress
    assert progress == sorted(progress), f"progress went down during alloc/commit: {progress}"
    states = [ORDER[s["status"]] for s in seen]
    assert states == sorted(states), [s["status"] for s in seen]
    assert all(s["phase"] in ("", "allocating", "allocated", "prefetching", "warmup") for s in seen), seen
    assert all(s["error"] is None for s in seen)

    # fit on a ready runner leaves it ready
    _, fit2 = runner.load("fit", **load_params())
    assert fit2["status"] == "ready"
    assert runner.health()["status"] == "ready"

    _, close = runner.load("close")
    assert close["op"] == "close" and close["status"] == "starting"
    assert runner.health() == {"status": "starting", "progress": 0.0, "error": None, "phase": "", "model": None, "loop_stalled_ms": 0.0}


def test_a_second_cycle_after_close_serves_again(runner):
    for _ in range(2):
        runner.load("alloc", **load_params(n_parallel=2, n_ctx=2048))
        runner.load("commit")
        status, out = runner.call("POST", "/completion", {**greedy("Hello", 4), "stream": False})
        assert status == 200 and out["stats"]["completion_tokens"] == 4, out
        runner.load("close")
        assert runner.health()["status"] == "starting"


def test_commit_before_alloc_is_409(runner):
    status, body = runner.load("commit", expect=None)
    assert_error(status, body, 409, "invalid_state")
    assert runner.health()["status"] == "starting"


def test_alloc_twice_is_409(runner):
    runner.load("alloc", **load_params(n_parallel=1, n_ctx=2048))
    status, body = runner.load("alloc", expect=None, **load_params(n_parallel=1, n_ctx=2048))
    assert_error(status, body, 409, "invalid_state")
    h = runner.health()
    assert h["status"] == "loading" and h["phase"] == "allocated" and h["error"] is None
    # the first alloc is intact: it commits
    runner.load("commit")
    assert runner.health()["status"] == "ready"
    status, body = runner.load("alloc", expect=None, **load_params(n_parallel=1, n_ctx=2048))
    assert_error(status, body, 409, "invalid_state")
    assert runner.health()["status"] == "ready"


def test_commit_twice_is_409(runner):
    runner.load("alloc", **load_params(n_parallel=1, n_ctx=2048))
    runner.load("commit")
    status, body = runner.load("commit", expect=None)
    assert_error(status, body, 409, "invalid_state")
    assert runner.health()["status"] == "ready"


def test_alloc_of_missing_file_is_404_then_health_error_then_close_recovers(runner, tmp_path):
    missing = tmp_path / "no-such-model.gguf"
    status, body = runner.load("alloc", expect=None, **load_params(model=str(missing)))
    detail = assert_error(status, body, 404, "not_found_error")
    h = runner.health()
    assert h["status"] == "error", h
    assert h["error"] and h["error"] == detail["message"], (h, detail)
    assert "no-such-model.gguf" in h["error"]
    # commit on an errored runner is refused
    status, body = runner.load("commit", expect=None)
    assert_error(status, body, 409, "invalid_state")
    _, close = runner.load("close")
    assert close["status"] == "starting"
    assert runner.health() == {"status": "starting", "progress": 0.0, "error": None, "phase": "", "model": None, "loop_stalled_ms": 0.0}
    # and the runner loads fine afterwards
    runner.load("alloc", **load_params(n_parallel=1, n_ctx=2048))
    assert runner.health()["phase"] == "allocated"


def test_alloc_of_non_gguf_file_is_422(runner, tmp_path):
    junk = tmp_path / "not-a-model.gguf"
    junk.write_bytes(b"this is not a GGUF file\n" * 4096)
    status, body = runner.load("alloc", expect=None, **load_params(model=str(junk)))
    assert_error(status, body, 422, "invalid_model_error")
    h = runner.health()
    assert h["status"] == "error" and h["error"], h
    runner.load("close")
    assert runner.health()["status"] == "starting"


def test_alloc_with_bad_n_parallel_is_400_and_state_unchanged(runner):
    status, body = runner.load("alloc", expect=None, **load_params(n_parallel=0))
    assert_error(status, body, 400, "invalid_request_error")
    assert runner.health()["status"] == "starting"


def test_fit_without_model_is_400(runner):
    status, body = runner.load("fit", expect=None)
    detail = assert_error(status, body, 400, "invalid_request_error")
    assert "model" in detail["message"]
    status, body = runner.load("alloc", expect=None)
    assert_error(status, body, 400, "invalid_request_error")
    assert runner.health()["status"] == "starting"


def test_unknown_op_is_400(runner):
    status, body = runner.load("explode", expect=None)
    detail = assert_error(status, body, 400, "invalid_request_error")
    assert "op" in detail["message"]
    status, body = runner.call("POST", "/load", {})
    assert_error(status, body, 400, "invalid_request_error")
    assert runner.health()["status"] == "starting"


async def test_completion_and_views_before_ready_are_503(runner):
    async with Client(runner) as c:
        for path, body in (("/completion", greedy("Hi", 2)), ("/tokenize", {"content": "Hi"}),
                           ("/cancel", {"id": "x"})):
            status, out = await c.post(path, body)
            assert_error(status, out, 503, "unavailable")
        status, out = await c.get("/kv")
        assert_error(status, out, 503, "unavailable")
        stats = await c.stats()
        assert stats["status"] == "starting" and stats["active"] == 0 and stats["devices"] == []

        # allocated but not committed: still not ready
        runner.load("alloc", **load_params(n_parallel=1, n_ctx=2048))
        status, out = await c.post("/completion", greedy("Hi", 2))
        detail = assert_error(status, out, 503, "unavailable")
        assert "loading" in detail["message"]
        stats = await c.stats()
        assert stats["status"] == "loading" and stats["n_parallel"] == 1 and stats["devices"]


async def test_concurrent_allocs_one_wins_one_is_409(runner):
    async with Client(runner) as c:
        body = {"op": "alloc", **load_params(n_parallel=1, n_ctx=2048)}
        results = await asyncio.gather(c.post("/load", body), c.post("/load", body))
    statuses = sorted(s for s, _ in results)
    assert statuses == [200, 409], results
    loser = next(out for s, out in results if s == 409)
    assert_error(409, loser, 409, "invalid_state")
    h = runner.health()
    assert h["status"] == "loading" and h["phase"] == "allocated"


async def test_close_during_a_stream_ends_it_with_error_and_returns_to_starting(runner):
    runner.load("alloc", **load_params(n_parallel=2, n_ctx=2048))
    runner.load("commit")
    async with Client(runner) as c:
        seen = []
        close = None
        async with c.open_stream(greedy("Count:", 1500, ignore_eos=True)) as records:
            async for rec in records:
                seen.append(rec)
                if len(seen) == 2:
                    close = asyncio.create_task(c.post("/load", {"op": "close"}))
        status, out = await asyncio.wait_for(close, 60)
        assert status == 200 and out["status"] == "starting", out
        _, final = split_stream(seen)
        assert final["finish_reason"] == "error" and final["error"], final
        assert final["stats"]["completion_tokens"] < 1500
        assert (await c.health())["status"] == "starting"
        status, out = await c.post("/completion", greedy("Hi", 2))
        assert_error(status, out, 503, "unavailable")
