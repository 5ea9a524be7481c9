"""The simulator: its cost model, the server it simulates (scheduler decisions, batching, lifecycle), runs."""

from __future__ import annotations

from pathlib import Path

import pytest

from mullama.bench.client import new_record
from mullama.bench.trace import Phase, RequestSpec
from mullama.core.errors import ConfigError
from mullama.serving.policies import make_policy
from mullama.sim import profile as profmod
from mullama.sim.loop import Loop
from mullama.sim.profile import ModelCost, Profile
from mullama.sim.run import SimConfig, route, simulate
from mullama.sim.server import SimServer, SimSettings

COST = ModelCost(step_ms=[(1, 10.0), (4, 16.0), (100, 100.0)], first_token_ms=5.0, template_tokens=0,
                 load_s=1.0, unload_s=0.5, memory_bytes=100)
PROFILE = Profile(name="test", models={"a": COST, "b": COST}, default="a")


def spec(i: int, *, model: str = "a", prompt: int = 100, out: int = 3, at: float = 0.0, **kw) -> RequestSpec:
    return RequestSpec(index=i, arrival_s=at, model=model, messages=[], max_tokens=out, ignore_eos=True,
                       temperature=0.0, prompt_words=prompt, **kw)


def server(policy: str = "fifo", **settings) -> tuple[Loop, SimServer, list]:
    loop, ended = Loop(), []
    srv = SimServer(loop, PROFILE, SimSettings(**settings), make_policy(policy), on_end=ended.append)
    return loop, srv, ended


def send(loop: Loop, srv: SimServer, s: RequestSpec) -> None:
    loop.at(s.arrival_s, lambda: srv.submit(s, {**new_record(s), "start_wall": loop.now}))


def test_step_cost_interpolates_and_extrapolates() -> None:
    assert COST.step(1) == 10.0 and COST.step(4) == 16.0
    assert COST.step(2) == pytest.approx(12.0)
    assert COST.step(52) == pytest.approx(58.0)
    assert COST.step(200) == pytest.approx(187.5)  # the last segment's slope
    assert COST.step(1, context=1000) == 10.0  # no context cost in this profile
    assert ModelCost(step_ms=[(1, 10.0)], ctx_ms_per_token=0.01).step(1, 100) == pytest.approx(11.0)


@pytest.mark.parametrize("points", [[], [(2, 1.0), (1, 2.0)], [(0, 1.0)], [(1, -1.0)]])
def test_a_bad_step_table_is_refused(points) -> None:
    with pytest.raises(ConfigError):
        ModelCost(step_ms=points)


def test_profile_round_trip_and_lookup(tmp_path: Path) -> None:
    path = profmod.save(PROFILE, tmp_path / "p" / "profile.json")
    assert profmod.load(path) == PROFILE
    assert PROFILE.resolve("") == "a" and PROFILE.resolve("b") == "b"
    with pytest.raises(ConfigError, match="no cost for model 'c'"):
        PROFILE.cost("c")
    star = Profile(name="any", models={"*": COST})
    assert star.cost("anything") is COST and star.resolve("x") == "x"
    with pytest.raises(ConfigError, match="mullama sim calibrate"):
        profmod.load(tmp_path / "missing.json")
    (tmp_path / "bad.json").write_text('{"name": 1}')
    with pytest.raises(ConfigError, match="not a simulator profile"):
        profmod.load(tmp_path / "bad.json")


def test_one_request_costs_overhead_prefill_and_one_step_per_token() -> None:
    loop, srv, ended = server(n_parallel=1)
    srv.preload(["a"])
    send(loop, srv, spec(0, prompt=100, out=3))
    loop.run()
    rec = ended[0].record
    assert rec["ok"] and rec["completion_tokens"] == 3 and rec["prompt_tokens"] == 100
    assert rec["ttft_ms"] == pytest.approx(5.0 + 100.0)      # first_token_ms + step(100)
    assert rec["gaps_ms"] == [pytest.approx(10.0)] * 2       # step(1) per later token
    assert rec["e2e_ms"] == pytest.approx(125.0)
    assert rec["profile"]["queue_ms"] == 0.0


def test_prompts_share_a_step_with_decoding_slots() -> None:
    loop, srv, ended = server(n_parallel=2)
    srv.preload(["a"])
    send(loop, srv, spec(0, prompt=2, out=5))
    send(loop, srv, spec(1, prompt=2, out=5, at=0.02))
    loop.run()
    first, second = sorted(ended, key=lambda j: j.spec.index)
    # request 1's prompt joined a step with request 0's decode token: 3 tokens, 14 ms, not its own 2-token step
    assert first.record["ok"] and second.record["ok"]
    assert any(g == pytest.approx(14.0) for g in first.record["gaps_ms"])


def test_slots_bound_the_running_requests() -> None:
    loop, srv, ended = server(n_parallel=1)
    srv.preload(["a"])
    for i in range(3):
        send(loop, srv, spec(i, prompt=4, out=2))
    loop.run()
    queue = [j.record["profile"]["queue_ms"] for j in sorted(ended, key=lambda j: j.spec.index)]
    assert queue[0] == 0 and 0 < queue[1] < queue[2]


def test_preemption_pauses_the_least_urgent_and_it_still_finishes() -> None:
    loop, srv, ended = server("preemptive", n_parallel=1)
    srv.preload(["a"])
    send(loop, srv, spec(0, prompt=4, out=20, priority=0))
    send(loop, srv, spec(1, prompt=4, out=2, priority=10, at=0.05))
    loop.run()
    low, high = sorted(ended, key=lambda j: j.spec.index)
    assert srv.counters["scheduler.preemptions"] == 1 and low.req.preemptions == 1
    assert high.record["e2e_ms"] < low.record["e2e_ms"] and low.record["completion_tokens"] == 20
    assert ended[0] is high


def test_deadlines_expire_in_the_queue_and_cancels_free_the_slot() -> None:
    loop, srv, ended = server(n_parallel=1)
    srv.preload(["a"])
    send(loop, srv, spec(0, prompt=4, out=50))
    send(loop, srv, spec(1, prompt=4, out=2, deadline_ms=100.0))
    send(loop, srv, spec(2, prompt=4, out=2, cancel_after_ms=50.0))
    loop.run()
    by = {j.spec.index: j.record for j in ended}
    assert by[1]["status"] == 408 and not by[1]["ok"] and srv.counters["scheduler.deadline_expired"] == 1
    assert by[2]["cancelled"] and by[2]["e2e_ms"] == pytest.approx(50.0) and by[2]["prompt_tokens"] is None
    assert by[0]["ok"]


def test_a_full_queue_answers_429() -> None:
    loop, srv, ended = server(n_parallel=1, max_queue=1)
    srv.preload(["a"])
    for i in range(3):
        send(loop, srv, spec(i, prompt=4, out=2))
    loop.run()
    assert sorted(j.record["status"] for j in ended if j.record["status"]) == [429]


def test_one_model_at_a_time_swaps_and_loads_one_after_another() -> None:
    loop, srv, ended = server(max_loaded_models=1)
    srv.preload(["a"])
    send(loop, srv, spec(0, model="a", prompt=4, out=2))
    send(loop, srv, spec(1, model="b", prompt=4, out=2, at=0.001))
    send(loop, srv, spec(2, model="a", prompt=4, out=2, at=0.002))
    loop.run()
    assert all(j.record["ok"] for j in ended) and len(ended) == 3
    assert srv.counters["models.evictions"] == 2 and srv.counters["models.loads"] == 2
    states = [h["state"] for h in srv.models["a"].history]
    assert states == ["ready", "draining", "unloading", "unloaded", "loading", "ready"]
    b = {j.spec.index: j for j in ended}[1]
    assert b.record["ttft_ms"] > 1000  # its runner launched while a drained and unloaded, then it loaded


def test_memory_budget_evicts_and_a_model_that_never_fits_is_507() -> None:
    loop, srv, ended = server(memory_budget=150)
    srv.preload(["a"])
    send(loop, srv, spec(0, model="b", prompt=4, out=2))
    loop.run()
    assert ended[0].record["ok"] and srv.counters["models.evictions"] == 1
    loop, srv, ended = server(memory_budget=50)
    send(loop, srv, spec(0, model="b", prompt=4, out=2))
    loop.run()
    assert ended[0].record["status"] == 507 and "memory budget" in ended[0].record["error"]


def test_keep_alive_unloads_an_idle_model() -> None:
    loop, srv, _ = server(keep_alive=2.0)
    srv.preload(["a"])
    send(loop, srv, spec(0, prompt=4, out=2))
    loop.run()
    assert srv.models["a"].state == "unloaded"
    assert srv.models["a"].history[-2] == {"state": "unloading", "at": pytest.approx(2.0 + 0.005 + 0.016 + 0.01, abs=1e-3),
                                           "reason": "keep_alive"}


def test_the_router_prefers_a_replica_with_the_model_then_the_least_loaded() -> None:
    loop = Loop()
    servers = [SimServer(loop, PROFILE, SimSettings(), make_policy("fifo"), on_end=lambda j: None, name=f"r{i}")
               for i in range(3)]
    servers[2].preload(["b"])
    assert route(servers, spec(0, model="b")) is servers[2]
    assert route(servers, spec(0, model="a")) is servers[0]


def test_simulate_is_deterministic_and_closed_loop_keeps_its_clients() -> None:
    phase = Phase(label="c=2", mode="closed", concurrency=2, rate=None,
                  requests=[spec(i, prompt=10 + i, out=4) for i in range(6)])
    cfg = SimConfig("fifo", settings=SimSettings(n_parallel=4))
    one, two = simulate(phase, PROFILE, cfg, warm=["a"]), simulate(phase, PROFILE, cfg, warm=["a"])
    assert [r["e2e_ms"] for r in one.records] == [r["e2e_ms"] for r in two.records]
    assert len(one.records) == 6 and all(r["ok"] for r in one.records)
    starts = sorted(r["start_wall"] for r in one.records)
    assert starts[:2] == [0.0, 0.0] and starts[2] > 0  # two clients: the third request waits for an answer
    fleet = simulate(phase, PROFILE, SimConfig("fifo", replicas=2), warm=["a"])
    assert {r["profile"]["model"] for r in fleet.records} <= {"a@r0", "a@r1"}


def test_a_load_that_evicts_costs_its_swap_extra() -> None:
    import msgspec

    slow = msgspec.structs.replace(COST, swap_extra_s=0.3)
    loop, ended = Loop(), []
    srv = SimServer(loop, Profile(name="t", models={"a": slow, "b": slow}), SimSettings(max_loaded_models=1),
                    make_policy("fifo"), on_end=ended.append)
    srv.preload(["a"])
    send(loop, srv, spec(0, model="b", prompt=4, out=1))
    loop.run()
    # launch (half of load_s) beside a's unload, then the other half, plus the swap's extra, then the prompt
    assert ended[0].record["ttft_ms"] == pytest.approx(500 + 500 + 300 + 5 + 16)


def test_calibration_measures_the_swap_extra(monkeypatch) -> None:
    from mullama.sim import calibrate

    calls = []

    def timed(target, path, model):
        calls.append(model)
        return {"a": 1.25, "b": 2.0}[model]

    monkeypatch.setattr(calibrate, "_timed", timed)
    assert calibrate.swap_extra(None, ["a", "b"], {"a": 1.0, "b": 2.5}, rounds=2) == {"a": 0.25, "b": 0.0}
    assert calls == ["b", "a", "b", "a", "b"]  # the last model first, then each in turn: every load evicts


def test_requests_that_arrive_while_a_load_fails_get_their_own_answer() -> None:
    loop, srv, ended = server(memory_budget=50, n_parallel=1)  # the model never fits
    for i in range(3):
        send(loop, srv, spec(i, prompt=4, out=1))
    loop.run()
    assert sorted(j.spec.index for j in ended) == [0, 1, 2]  # none left waiting for a load that never comes
    assert {j.record["status"] for j in ended} == {507}
