"""Each model's state history over a whole run. The server keeps only the last entries per model
(``serving/runtime.HISTORY``), fewer than a swap-heavy run makes, so the run polls ``/internal/models`` and
keeps every entry it saw; the timeline then shows the residency from the first phase to the last."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from mullama.bench.servers import Target


class ModelHistory:
    def __init__(self, target: Target, interval: float = 2.0) -> None:
        self.target, self.interval = target, interval
        self._seen: dict[str, dict[tuple, dict[str, Any]]] = {}
        self._task: asyncio.Task | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop())

    async def stop(self) -> dict[str, Any] | None:
        """Stop polling; the last ``/internal/models`` view with every history entry seen during the run."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        return self.merge(await asyncio.to_thread(self.target.internal, "/internal/models"))

    async def _loop(self) -> None:
        while True:
            self.merge(await asyncio.to_thread(self.target.internal, "/internal/models"))
            await asyncio.sleep(self.interval)

    def merge(self, view: dict[str, Any] | None) -> dict[str, Any] | None:
        """Add ``view``'s history entries to those seen; ``view`` with all of them, in time order."""
        if not view:
            return view
        for m in view.get("models", []):
            seen = self._seen.setdefault(m["name"], {})
            for h in m.get("history") or []:
                seen.setdefault((h.get("state"), h.get("at")), h)
        merged = []
        for m in view.get("models", []):
            merged.append({**m, "history": sorted(self._seen.get(m["name"], {}).values(), key=lambda h: h.get("at", 0))})
        return {**view, "models": merged}
