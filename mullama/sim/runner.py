"""A simulated runner: one model's state and its C++ batcher's step loop, on a cost model.

``SimModel.kick`` starts a step when the runner is idle and has work, built as ``Batcher::step``
builds it: one token for every decoding slot, then prompt chunks, oldest admission first, filling
the rest of ``n_batch``. The step lasts what the profile says; at its end every decoder has one more
token and a prompt whose last chunk was in the step has its first. The server is told through
``on_token``; it owns what happens when a request ends.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from mullama.bench.trace import RequestSpec
from mullama.serving.policies import Request
from mullama.sim.loop import Loop
from mullama.sim.profile import ModelCost


@dataclass(eq=False)
class SimJob:
    """One request's passage: queued | paused | waiting (for its model) | transit (to the runner) |
    running | done."""

    spec: RequestSpec
    req: Request
    arrived: float
    prompt_tokens: int
    record: dict[str, Any]
    state: str = "queued"
    n_past: int = 0
    prefilled: bool = False
    generated: int = 0
    last_token_at: float | None = None
    dispatched_at: float | None = None
    load_wait_s: float = 0.0


@dataclass(eq=False)
class SimModel:
    name: str
    cost: ModelCost
    loop: Loop
    n_batch: int
    on_token: Callable[[SimJob], None]
    share: Callable[[], int]            # how many runners split the compute now (1: this one alone)
    state: str = "unloaded"             # unloaded | loading | ready | draining | unloading
    jobs: list[SimJob] = field(default_factory=list)      # admitted to the batcher, admission order
    transit: list[SimJob] = field(default_factory=list)   # leased, on their way to the runner
    waiters: list[SimJob] = field(default_factory=list)   # leased, waiting for the model to be ready
    stepping: bool = False
    launched: bool = False              # its load: the runner is up and fitted
    room_made: bool = False             # its load: the other models made room
    evicted: bool = False               # its load: another model was evicted for it
    evict_ok: bool = True               # its queued load may evict (a prefetch below the confidence bar may not)
    last_used: float = 0.0
    idle_epoch: int = 0                 # bumps on every use, so a stale keep-alive timer does nothing
    history: list[dict[str, Any]] = field(default_factory=list)
    steps: int = 0
    step_tokens: int = 0

    def set_state(self, state: str, reason: str = "") -> None:
        self.state = state
        self.history.append({"state": state, "at": self.loop.now, "reason": reason})

    @property
    def in_flight(self) -> int:
        return len(self.jobs) + len(self.transit)

    def kick(self) -> None:
        """Start a step if the runner is free and some admitted request has work."""
        if self.stepping or self.state not in ("ready", "draining"):
            return
        live = [j for j in self.jobs if j.state == "running"]
        decoders = [j for j in live if j.prefilled]
        tokens = len(decoders)
        chunks: list[tuple[SimJob, int]] = []
        for j in live:
            if j.prefilled:
                continue
            room = self.n_batch - tokens
            if room <= 0:
                break
            n = min(room, j.prompt_tokens - j.n_past)
            chunks.append((j, n))
            tokens += n
        if tokens == 0:
            return
        context = sum(j.n_past for j in decoders)
        seconds = self.cost.step(tokens, context) / 1000 * max(1, self.share())
        self.stepping = True
        self.steps += 1
        self.step_tokens += tokens
        self.loop.after(seconds, lambda: self._stepped(decoders, chunks))

    def _stepped(self, decoders: list[SimJob], chunks: list[tuple[SimJob, int]]) -> None:
        self.stepping = False
        for j in decoders:
            if j.state == "running":
                j.n_past += 1
                self.on_token(j)
        for j, n in chunks:
            if j.state == "running":
                j.n_past += n
                if j.n_past >= j.prompt_tokens:
                    j.prefilled = True
                    self.on_token(j)
        self.kick()
