"""The RPC workers the supervisor may spread models over: who holds which, what each offers now.

A worker serves one client (one runner) at a time, so a worker a loaded model holds is not offered to
another model's plan (it is "in use by" that model) and is never probed while held: a probe would wait
in its accept queue. ``devices_for`` probes a model's free workers just before it is planned; ``refresh``
probes every free one (at start and every ``INTERVAL`` s) for ``/internal/models`` and ``/metrics``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

import structlog

from mullama.config import Settings
from mullama.hardware.devices import RemoteDevice
from mullama.hardware.workers import Worker, probe
from mullama.serving.runtime import Runtime

INTERVAL = 30.0
PROBE_TIMEOUT = 2.0

log = structlog.get_logger("mullama.workers")


def configured(settings: Settings) -> tuple[str, ...]:
    """Every worker the settings name, server-wide first, each once."""
    names = list(settings.rpc_workers)
    for entry in settings.models.values():
        names += list(entry.rpc_workers or ())
    return tuple(dict.fromkeys(names))


def holders(runtimes: Iterable[Runtime]) -> dict[str, str]:
    """endpoint -> the model whose runner holds it (a planned or loaded placement with a live runner)."""
    held: dict[str, str] = {}
    for rt in runtimes:
        if rt.handle is not None and rt.placement is not None:
            held.update({endpoint: rt.name for endpoint in rt.placement.rpc_servers})
    return held


class Workers:
    def __init__(self, settings: Settings) -> None:
        self.endpoints = configured(settings)
        self.status: dict[str, Worker] = {}

    async def probe(self, endpoints: Iterable[str]) -> list[Worker]:
        found = await asyncio.gather(*(probe(e, PROBE_TIMEOUT) for e in endpoints))
        for w in found:
            before = self.status.get(w.endpoint)
            if before is None or before.state != w.state:
                (log.info if w.ok else log.warning)("rpc_worker", endpoint=w.endpoint, state=w.state, error=w.error,
                                                    rtt_ms=round(w.rtt_ms, 3), devices=len(w.devices))
            self.status[w.endpoint] = w
        return list(found)

    async def devices_for(self, rt: Runtime, runtimes: Iterable[Runtime]) -> tuple[tuple[RemoteDevice, ...],
                                                                                     tuple[str, ...]]:
        """The devices of ``rt``'s workers that are free now, and why the others are left out."""
        held = {e: name for e, name in holders(runtimes).items() if name != rt.name}
        wanted = rt.config.rpc_workers
        skipped = [f"{e} (in use by {held[e]}: a worker serves one runner at a time)" for e in wanted if e in held]
        found = await self.probe([e for e in wanted if e not in held])
        skipped += [f"{w.endpoint} ({w.state}: {w.error})" for w in found if not w.ok]
        return tuple(d for w in found if w.ok for d in w.devices), tuple(skipped)

    async def refresh(self, runtimes: Iterable[Runtime]) -> None:
        held = holders(runtimes)
        await self.probe([e for e in self.endpoints if e not in held])

    async def run(self, runtimes_of) -> None:
        """Probe the free workers now and every INTERVAL s (a task of the app's life)."""
        while True:
            await self.refresh(runtimes_of())
            await asyncio.sleep(INTERVAL)

    async def unreachable(self, endpoints: Iterable[str]) -> list[Worker]:
        """After a runner that used these died: the ones that no longer answer (to name them)."""
        return [w for w in await self.probe(endpoints) if w.state == "unreachable"]

    def describe(self, runtimes: Iterable[Runtime]) -> list[dict]:
        held = holders(runtimes)
        out = []
        for endpoint in self.endpoints:
            w = self.status.get(endpoint)
            entry = w.describe() if w is not None else {"endpoint": endpoint, "state": "unknown", "error": "",
                                                        "rtt_ms": 0.0, "version": "", "probed_at": 0.0, "devices": []}
            entry["held_by"] = held.get(endpoint)
            out.append(entry)
        return out
