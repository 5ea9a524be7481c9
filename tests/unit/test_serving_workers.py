"""serving.workers: which RPC workers a model may use (free ones), which are held, what is shown; and the
``rpc_workers`` / ``ram_budget`` settings. The probe is replaced: no network here."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import pytest
from config_helpers import error, load

from mullama.config import model_settings
from mullama.hardware.devices import RemoteDevice
from mullama.hardware.workers import Worker
from mullama.serving import workers as mod

A, B, C = "10.0.0.2:50052", "10.0.0.3:50052", "10.0.0.4:50052"


def rt(name: str, rpc_workers=(), holds=(), live=True):
    placement = SimpleNamespace(rpc_servers=tuple(holds)) if holds else None
    return SimpleNamespace(name=name, config=SimpleNamespace(rpc_workers=tuple(rpc_workers)),
                           handle=object() if live else None, placement=placement)


@pytest.fixture
def probed(monkeypatch):
    asked: list[str] = []

    async def fake_probe(endpoint: str, timeout: float) -> Worker:
        asked.append(endpoint)
        if endpoint == C:
            return Worker(endpoint, "unreachable", "connection refused: nothing listens there")
        return Worker(endpoint, "ok", devices=(RemoteDevice(endpoint, 0, 1 << 30, 2 << 30),))

    monkeypatch.setattr(mod, "probe", fake_probe)
    return asked


def test_a_model_gets_its_free_answering_workers_and_hears_why_the_others_are_out(tmp_path, probed):
    w = mod.Workers(load(tmp_path, flags={"rpc_workers": (A, B, C)}))
    other = rt("other", holds=(B,))
    remote, skipped = asyncio.run(w.devices_for(rt("m", (A, B, C)), [other]))
    assert [d.endpoint for d in remote] == [A]
    assert skipped == (f"{B} (in use by other: a worker serves one runner at a time)",
                       f"{C} (unreachable: connection refused: nothing listens there)")
    assert B not in probed  # never probe a worker a runner holds: the probe would wait in its accept queue


def test_a_model_may_reuse_the_workers_it_held_itself(tmp_path, probed):
    w = mod.Workers(load(tmp_path, flags={"rpc_workers": (A,)}))
    remote, skipped = asyncio.run(w.devices_for(rt("m", (A,)), [rt("m", holds=(A,))]))
    assert [d.endpoint for d in remote] == [A] and skipped == ()


def test_a_dead_runner_holds_nothing(tmp_path):
    assert mod.holders([rt("m", holds=(A,), live=False), rt("n", holds=(B,))]) == {B: "n"}


def test_refresh_and_describe_show_every_configured_worker_held_or_not(tmp_path, probed):
    settings = load(tmp_path, "rpc_workers = ['%s', '%s']\n[models.smollm2]\nrpc_workers = ['%s']\n" % (A, B, C))
    w = mod.Workers(settings)
    assert w.endpoints == (A, B, C)
    runtimes = [rt("smollm2", holds=(B,))]
    asyncio.run(w.refresh(runtimes))
    shown = {d["endpoint"]: (d["state"], d["held_by"]) for d in w.describe(runtimes)}
    assert shown == {A: ("ok", None), B: ("unknown", "smollm2"), C: ("unreachable", None)}
    assert sorted(probed) == [A, C]


def test_unreachable_names_the_workers_that_no_longer_answer(tmp_path, probed):
    w = mod.Workers(load(tmp_path))
    assert [x.endpoint for x in asyncio.run(w.unreachable([A, C]))] == [C]


def test_rpc_workers_and_ram_budget_resolve_per_model(tmp_path):
    s = load(tmp_path, f"rpc_workers = ['{A}']\nram_budget = '2GiB'\n[models.big]\nrpc_workers = ['{B}', '{C}']\n"
                       "ram_budget = '512MiB'\n")
    assert model_settings(s, "small", "small").rpc_workers == (A,)
    assert model_settings(s, "small", "small").ram_budget == 2 << 30
    assert model_settings(s, "big", "big").rpc_workers == (B, C)
    assert model_settings(s, "big", "big").ram_budget == 512 << 20
    assert model_settings(load(tmp_path), "x", "x").ram_budget == 0  # 0: what is free


def test_rpc_workers_from_the_environment_and_flags(tmp_path):
    assert load(tmp_path, env={"MULLAMA_RPC_WORKERS": f"{A}, {B}"}).rpc_workers == (A, B)
    assert load(tmp_path, flags={"rpc_workers": [A]}).rpc_workers == (A,)


@pytest.mark.parametrize("value, says", [
    ("['10.0.0.2']", "expected 'host:port'"), ("['10.0.0.2:0']", "expected 'host:port'"),
    ("['[::1]:50052']", "expected 'host:port'"), (f"['{A}', '{A}']", "listed twice"),
])
def test_a_bad_worker_address_is_refused_with_its_place(tmp_path, value, says):
    assert says in error(tmp_path, f"rpc_workers = {value}\n")
    assert "models.m.rpc_workers" in error(tmp_path, f"[models.m]\nrpc_workers = {value}\n")


def test_ram_budget_is_a_positive_size(tmp_path):
    assert "ram_budget" in error(tmp_path, "ram_budget = 0\n")
    assert "ram_budget" in error(tmp_path, "ram_budget = 'lots'\n")
