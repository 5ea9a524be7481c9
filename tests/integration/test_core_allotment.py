"""The core allotment with real runners: two loaded models each run on their own core with one decode
thread (read back from /proc: every thread of each runner), the survivor gets both cores and two
threads when the other unloads, and both keep answering throughout."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from supervisor_harness import Server, base_settings, q8_variant, until

Q4, Q8 = "smollm2:q4_1", "smollm2:q8_0"
CORES = sorted(os.sched_getaffinity(0))

pytestmark = pytest.mark.skipif(len(CORES) < 2, reason="needs two cores to divide")


def _affinities(pid: int) -> set[tuple[int, ...]]:
    """The distinct CPU affinities of every thread of ``pid``."""
    out = set()
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            out.add(tuple(sorted(os.sched_getaffinity(int(tid)))))
        except ProcessLookupError:
            pass
    return out


def _cpu(server: Server, name: str) -> dict | None:
    models = {m["name"]: m for m in server.call("GET", "/internal/models")[1]["models"]}
    return models[name]["cpu"]


def _chat(server: Server, model: str) -> str:
    status, body = server.call("POST", "/v1/chat/completions", {
        "model": model, "messages": [{"role": "user", "content": "Say hi."}], "max_tokens": 4, "temperature": 0})
    assert status == 200, body
    return body["choices"][0]["message"]["content"]


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Server:
    q8_variant()
    srv = Server(tmp_path_factory.mktemp("cores"), base_settings(threads=0, threads_batch=0))
    yield srv
    srv.stop()


def test_two_models_get_a_core_each_and_the_survivor_gets_both_back(server: Server) -> None:
    assert _chat(server, Q4)
    alone = _cpu(server, Q4)
    assert alone == {"cores": CORES, "threads": len(CORES)}

    assert _chat(server, Q8)
    both = until(lambda: (_cpu(server, Q4), _cpu(server, Q8))
                  if _cpu(server, Q4) != alone and _cpu(server, Q8) else None)
    q4, q8 = both
    assert not set(q4["cores"]) & set(q8["cores"]) and q4["cores"] and q8["cores"]
    assert q4["threads"] == len(q4["cores"]) and q8["threads"] == len(q8["cores"])
    models = {m["name"]: m for m in server.call("GET", "/internal/models")[1]["models"]}
    for name, cpu in ((Q4, q4), (Q8, q8)):
        assert _affinities(models[name]["pid"]) == {tuple(cpu["cores"])}, name  # every thread of the runner
    assert _chat(server, Q4) and _chat(server, Q8)
    kinds = [e for e in server.events("cores_allotted") if e.get("model") == Q4]
    assert kinds and kinds[-1]["cores"] == q4["cores"]

    status, _ = server.call("POST", "/api/unload", {"model": Q8})
    assert status == 200
    back = until(lambda: _cpu(server, Q4) if _cpu(server, Q4) == alone else None)
    assert _affinities(models[Q4]["pid"]) == {tuple(back["cores"])}
    assert _cpu(server, Q8) is None
    assert _chat(server, Q4)


def test_off_leaves_every_runner_on_every_core(tmp_path: Path) -> None:
    q8_variant()
    srv = Server(tmp_path, base_settings(cpu_allotment="off"))
    try:
        assert _chat(srv, Q4) and _chat(srv, Q8)
        models = {m["name"]: m for m in srv.call("GET", "/internal/models")[1]["models"]}
        for name in (Q4, Q8):
            assert models[name]["cpu"] is None
            assert _affinities(models[name]["pid"]) == {tuple(CORES)}
    finally:
        srv.stop()
