"""Host memory for parked prefix caches shared among real runners (hardware/cache_ram.py): with a memory
budget, one model alone gets what the budget leaves beside it; a second one's load halves that first
(the first runner's parked caches beyond its new limit go before the second allocates); the first gets
its share back when the second unloads. Each runner's parked bytes stay within its limit throughout."""

from __future__ import annotations

import pytest
from supervisor_harness import Server, base_settings, q8_variant, until

Q4, Q8 = "smollm2:q4_1", "smollm2:q8_0"
BUDGET = 1 << 30


def _models(server: Server) -> dict[str, dict]:
    return {m["name"]: m for m in server.call("GET", "/internal/models")[1]["models"]}


def _parked(server: Server, name: str) -> int:
    status, body = server.call("GET", f"/internal/kv/{name}")
    assert status == 200, body
    return body["parked_bytes"]


def _chat(server: Server, model: str, text: str) -> None:
    status, body = server.call("POST", "/v1/chat/completions", {
        "model": model, "messages": [{"role": "user", "content": text}], "max_tokens": 4, "temperature": 0})
    assert status == 200, body


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Server:
    q8_variant()
    srv = Server(tmp_path_factory.mktemp("cache-ram"), base_settings(memory_budget=BUDGET))
    yield srv
    srv.stop()


def test_two_runners_share_what_the_budget_leaves(server: Server) -> None:
    for text in ("Name a river.", "Name a mountain.", "Name a sea."):  # three prompts: two get parked
        _chat(server, Q4, text)
    alone = _models(server)[Q4]
    assert BUDGET // 2 < alone["cache_ram"] < BUDGET - alone["memory"] // 2  # the budget less the model (planned)
    assert 0 < _parked(server, Q4) <= alone["cache_ram"]

    _chat(server, Q8, "Name a lake.")
    models = _models(server)
    q4, q8 = models[Q4]["cache_ram"], models[Q8]["cache_ram"]
    assert 0 < q4 < alone["cache_ram"] and q8 > 0
    assert q4 + q8 <= BUDGET - models[Q4]["memory"] - models[Q8]["memory"] + (1 << 20)  # planned vs measured
    allotted = [e for e in server.events("cache_ram_allotted") if e.get("model") == Q4]
    assert allotted and allotted[-1]["limit"] == q4 and allotted[-1]["held"] <= q4
    for text in ("Name a city.", "Name a country."):
        _chat(server, Q4, text)
    assert _parked(server, Q4) <= q4

    status, _ = server.call("POST", "/api/unload", {"model": Q8})
    assert status == 200
    back = until(lambda: _models(server)[Q4]["cache_ram"] if _models(server)[Q4]["cache_ram"] > q4 else None)
    assert back > q4 and _models(server)[Q8]["cache_ram"] is None
    _chat(server, Q4, "Name a river.")


def test_a_runner_drops_parked_caches_beyond_its_new_share(tmp_path) -> None:
    """With a budget that leaves 8 MiB beside both models, Q8's load lowers Q4's share to about 4 MiB: Q4's
    runner, holding more, drops parked caches until it holds no more than that (its own answer, in the
    event, and its /kv say so)."""
    q8_variant()
    probe = Server(tmp_path / "probe", base_settings(memory_budget=BUDGET))
    try:
        _chat(probe, Q4, "Hi.")
        _chat(probe, Q8, "Hi.")
        models = _models(probe)
        q4_memory, q8_planned = models[Q4]["memory"], models[Q8]["placement"]["total_bytes"]
    finally:
        probe.stop()
    server = Server(tmp_path / "tight", base_settings(memory_budget=q4_memory + q8_planned + (8 << 20)))
    try:
        long = " ".join(f"word{k}" for k in range(150))
        for n in range(3):
            _chat(server, Q4, f"Repeat these {n}: {long}")
        before = _parked(server, Q4)
        assert before > 4 << 20, before  # two long prompts parked
        _chat(server, Q8, "Hi.")
        limit = _models(server)[Q4]["cache_ram"]
        assert limit <= 4 << 20 and _parked(server, Q4) <= limit
        last = [e for e in server.events("cache_ram_allotted") if e.get("model") == Q4][-1]
        assert last["limit"] == limit and last["held"] <= limit < before  # the runner's own answer
        assert not server.events("model_evicted")
        _chat(server, Q4, f"Repeat these 0: {long}")  # still serves, parked or not
    finally:
        server.stop()
