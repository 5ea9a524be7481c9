"""One simulated `mullama serve`: the scheduler's decisions and the lifecycle's eviction, on simulated time.

What is shared with the real server, not re-written: the policy objects (``serving.policies``), the
scheduling pass (``serving.dispatch.decide``) and the eviction choice (``serving.eviction``). What is
modelled: the request path around them (queue bounds, deadlines, client cancels), the lifecycle's
load → ready → drain → unload with ``max_loaded_models`` and ``memory_budget``, keep-alive, and one
``SimModel`` (the runner and its batcher) per model. docs/research.md says what is left out.
"""

from __future__ import annotations

import collections
from collections.abc import Callable
from dataclasses import dataclass

from mullama.bench.trace import RequestSpec
from mullama.serving.dispatch import decide
from mullama.serving.eviction import Candidate, choose_victim
from mullama.serving.policies import Policy, Request
from mullama.serving.prefetch import make_predictor
from mullama.sim.loop import Loop
from mullama.sim.profile import Profile
from mullama.sim.runner import SimJob, SimModel

#: The share of a load spent launching the runner and fitting, before room is made for it (the real order:
#: ``_load_runner`` starts the process and fits, then ``_make_room`` evicts). An assumption, not measured.
LAUNCH = 0.5


@dataclass(frozen=True)
class SimSettings:
    """The server settings the simulation honours (the same names as config/schema.py)."""

    n_parallel: int = 4
    n_batch: int = 2048
    max_loaded_models: int = 0
    memory_budget: int | None = None
    keep_alive: float = -1.0            # seconds; -1 forever, 0 unload as soon as idle
    max_queue: int = 512
    max_queue_per_model: int = 128
    prefetch: str = "markov"            # the predictor ("none": off), as the server's ``prefetch`` setting
    prefetch_idle: float = 0.5
    prefetch_min_confidence: float = 0.6


class SimServer:
    def __init__(self, loop: Loop, profile: Profile, settings: SimSettings, policy: Policy, *,
                 on_end: Callable[[SimJob], None], name: str = "sim") -> None:
        self.loop, self.profile, self.settings, self.policy = loop, profile, settings, policy
        self.name = name
        self._on_end = on_end
        self.models: dict[str, SimModel] = {}
        self.queued: dict[str, SimJob] = {}
        self.running: dict[str, dict[str, SimJob]] = collections.defaultdict(dict)
        self.counters: collections.Counter = collections.Counter()
        self._seq = 0
        self._loads: collections.deque[SimModel] = collections.deque()  # waiting for the one load at a time
        self._loading: SimModel | None = None
        self.predictor = make_predictor(settings.prefetch)  # the server's own predictor (serving/prefetch.py)
        self._last: str | None = None
        self._idle_epoch = 0

    # ------------------------------------------------------------------ requests

    def model(self, name: str) -> SimModel:
        if name not in self.models:
            self.models[name] = SimModel(name=name, cost=self.profile.cost(name), loop=self.loop,
                                         n_batch=self.settings.n_batch, on_token=self._token, share=self._share)
        return self.models[name]

    def load(self) -> int:
        """Requests queued or running here (a router's measure)."""
        return len(self.queued) + sum(len(r) for r in self.running.values())

    def preload(self, names: list[str]) -> None:
        """Start with these models ready (what a real run's warm-up leaves loaded), up to the model limit."""
        names = list(dict.fromkeys(self.profile.resolve(n) for n in names))
        keep = names[-self.settings.max_loaded_models:] if self.settings.max_loaded_models else names
        for name in keep:
            m = self.model(name)
            m.set_state("ready", "warm-up")
            m.last_used = self.loop.now

    def loaded(self) -> list[str]:
        """The models loaded now, least recently used first."""
        ready = [m for m in self.models.values() if m.state in ("ready", "loading", "draining")]
        return [m.name for m in sorted(ready, key=lambda m: m.last_used)]

    def submit(self, spec: RequestSpec, record: dict, *, exact: bool = False) -> SimJob:
        """A request arrives. ``exact``: its ``prompt_words`` are its prompt's tokens, template included (a
        replayed trace's prompts are fitted so); otherwise the chat template's tokens are added."""
        now, s = self.loop.now, self.settings
        name = self.profile.resolve(spec.model)
        cost = self.model(name).cost
        self._seq += 1
        deadline = now + spec.deadline_ms / 1000 if spec.deadline_ms is not None else None
        req = Request(id=f"{self.name}-{spec.index}-{self._seq}", model=name, user=spec.user or "127.0.0.1",
                      priority=spec.priority or 0, deadline=deadline, arrived=now, seq=self._seq,
                      prompt_chars=spec.prompt_words * 5, max_tokens=spec.max_tokens)
        job = SimJob(spec=spec, req=req, arrived=now, prompt_tokens=spec.prompt_words + (0 if exact else cost.template_tokens),
                     record=record)
        per_model = sum(1 for j in self.queued.values() if j.req.model == name)
        if len(self.queued) >= s.max_queue or per_model >= s.max_queue_per_model:
            self.counters["scheduler.rejected"] += 1
            self._fail(job, 429, "HTTP 429: the queue is full")
            return job
        self._idle_epoch += 1  # a request arrived: the prefetch timer is off
        self._last = name
        if self.predictor is not None:
            self.predictor.observe(name)
        self.queued[req.id] = job
        self.policy.add(req)
        self.counters["scheduler.submitted"] += 1
        if spec.cancel_after_ms:
            self.loop.after(spec.cancel_after_ms / 1000, lambda: self.cancel(job))
        if deadline is not None:
            self.loop.at(deadline + 0.001, self.pump)
        self.pump()
        return job

    def pump(self) -> None:
        now = self.loop.now
        running = {m: [j.req for j in jobs.values()] for m, jobs in self.running.items()}

        def queued(req: Request) -> str | None:
            job = self.queued.get(req.id)
            return job.state if job is not None else None

        def preemptible(req: Request) -> bool:
            job = self.running[req.model].get(req.id)
            return job is not None and job.state == "running"

        for act in decide(self.policy, now, queued=queued, running=running,
                          capacity=lambda m: self.settings.n_parallel, preemptible=preemptible):
            job = self.queued.get(act.request.id) or self.running[act.request.model][act.request.id]
            if act.kind == "expire":
                del self.queued[job.req.id]
                self.policy.remove(job.req, False)
                self.counters["scheduler.deadline_expired"] += 1
                self._fail(job, 408, "HTTP 408: the deadline passed while queued")
            elif act.kind == "preempt":
                del self.running[job.req.model][job.req.id]
                job.state, job.req.paused = "paused", True
                job.req.preemptions += 1
                self.queued[job.req.id] = job
                self.policy.add(job.req)
                self.counters["scheduler.preemptions"] += 1
            else:
                del self.queued[job.req.id]
                self.policy.remove(job.req, True)
                self.running[job.req.model][job.req.id] = job
                if job.state == "paused":
                    job.state, job.req.paused = "running", False
                    self.models[job.req.model].kick()
                else:
                    job.dispatched_at = now
                    self._lease(job)

    def cancel(self, job: SimJob) -> None:
        """The client gave up: the request leaves wherever it is, and its slot frees."""
        if job.state == "done":
            return
        if job.req.id in self.queued:
            del self.queued[job.req.id]
            self.policy.remove(job.req, False)
        job.record["cancelled"] = True
        self._end(job)

    # ------------------------------------------------------------------ the runner's side

    def _lease(self, job: SimJob) -> None:
        m = self.model(job.req.model)
        if m.state == "ready":
            self._send(m, job)
        else:
            job.state, job.load_wait_s = "waiting", self.loop.now
            m.waiters.append(job)
            m.evict_ok = True
            self._ensure_loaded(m)

    def _send(self, m: SimModel, job: SimJob) -> None:
        """The supervisor → runner hop: the request reaches the batcher ``first_token_ms`` later."""
        job.state = "transit"
        m.transit.append(job)
        m.idle_epoch += 1
        self.loop.after(m.cost.first_token_ms / 1000, lambda: self._admit(m, job))

    def _admit(self, m: SimModel, job: SimJob) -> None:
        if job.state != "transit":
            return
        m.transit.remove(job)
        job.state = "running"
        m.jobs.append(job)
        m.last_used = self.loop.now
        m.kick()

    def _token(self, job: SimJob) -> None:
        now, rec = self.loop.now, job.record
        job.generated += 1
        if job.last_token_at is None:
            rec["ttft_ms"] = round((now - job.arrived) * 1000, 3)
        else:
            rec["gaps_ms"].append(round((now - job.last_token_at) * 1000, 3))
        job.last_token_at = now
        if job.generated >= job.spec.max_tokens:
            rec["ok"], rec["finish_reason"] = True, "length"
            self._end(job)

    def _fail(self, job: SimJob, status: int, error: str) -> None:
        job.record.update(status=status, error=error)
        self._end(job)

    def _end(self, job: SimJob) -> None:
        if job.state == "done":
            return
        now, rec, prior = self.loop.now, job.record, job.state
        job.state = "done"
        self.running[job.req.model].pop(job.req.id, None)
        m = self.models.get(job.req.model)
        if m is not None:
            for held in (m.jobs, m.transit, m.waiters):
                if job in held:
                    held.remove(job)
            m.last_used = now
            if m.state == "draining" and m.in_flight == 0:
                self._unload(m)
            elif m.state == "ready" and m.in_flight == 0 and self.settings.keep_alive >= 0:
                m.idle_epoch += 1
                epoch = m.idle_epoch
                self.loop.after(self.settings.keep_alive, lambda: self._expire_idle(m, epoch))
        rec["e2e_ms"] = round((now - job.arrived) * 1000, 3)
        rec["completion_tokens"] = rec["chunks"] = job.generated
        rec["prompt_tokens"] = job.prompt_tokens if prior != "queued" or job.generated else None
        rec["cached_tokens"] = 0 if rec["prompt_tokens"] is not None else None
        if job.dispatched_at is not None:
            gaps = sorted(rec["gaps_ms"])
            rec["profile"] = {"model": job.req.model, "queue_ms": round((job.dispatched_at - job.arrived) * 1000, 3),
                              "preemptions": job.req.preemptions, "completion_tokens": job.generated,
                              "inter_token_ms_p50": gaps[len(gaps) // 2] if gaps else None,
                              "replica": self.name}
        self._on_end(job)
        self.pump()
        if self.predictor is not None and self._last is not None:
            self._idle_epoch += 1
            epoch = self._idle_epoch
            self.loop.after(self.settings.prefetch_idle, lambda: self._prefetch(epoch))

    def _prefetch(self, epoch: int) -> None:
        """The server idled ``prefetch_idle`` seconds: load the predicted next model, as ``Prefetcher`` does
        (evicting only at ``prefetch_min_confidence``, into free room only at half of it)."""
        busy = self.queued or any(self.running.values()) or any(m.in_flight or m.waiters for m in self.models.values())
        if epoch != self._idle_epoch or busy or self._last is None:
            return
        guess = self.predictor.predict(self._last)
        if guess is None or guess[1] < self.settings.prefetch_min_confidence / 2:
            return
        target = self.model(guess[0])
        if target.state in ("ready", "loading") or target is self._loading or target in self._loads:
            return
        target.evict_ok = guess[1] >= self.settings.prefetch_min_confidence
        self.counters["prefetches"] += 1
        self._ensure_loaded(target)

    def _share(self) -> int:
        if self.profile.compute == "exclusive":
            return 1
        # a loading runner gets its cores once room is made (serving/loading.py), not while a victim drains
        return sum(1 for m in self.models.values()
                   if m.state in ("ready", "draining") or (m.state == "loading" and m.room_made))

    # ------------------------------------------------------------------ the lifecycle

    def _ensure_loaded(self, m: SimModel) -> None:
        """Queue ``m``'s load: loads run one at a time, in the order asked (the lifecycle's ``_load_lock``)."""
        if m.state in ("loading", "ready") or m is self._loading or m in self._loads:
            return
        self._loads.append(m)
        self._next_load()

    def _next_load(self) -> None:
        if self._loading is None and self._loads:
            self._loading = self._loads.popleft()
            self._load_step()

    def _load_step(self) -> None:
        """The load in progress goes as far as it can. As in ``Loading._load_runner``: once its model has left
        (a model reloading waits for its own unload), the runner is launched and fitted (``LAUNCH`` of
        ``load_s``) while room is made (evicting, then waiting for the victim to drain and unload); then the
        weights load and it warms up (the rest of ``load_s``). Called again whenever a model has unloaded."""
        m, s = self._loading, self.settings
        if m is None or m.state in ("draining", "unloading"):
            return
        if m.state == "unloaded":
            m.set_state("loading", "request" if m.waiters else "prefetch")
            m.launched = m.room_made = m.evicted = False
            self.counters["models.loads"] += 1
            self.loop.after(m.cost.load_s * LAUNCH, lambda: self._launched(m))
        if m.room_made:
            return
        others = [x for x in self.models.values() if x is not m and x.state != "unloaded"]
        over = bool(s.max_loaded_models and len(others) >= s.max_loaded_models)
        if s.memory_budget is not None and not over:
            if m.cost.memory_bytes > s.memory_budget:
                return self._no_fit(m, f"{m.name} needs more than the whole memory budget")
            over = sum(x.cost.memory_bytes for x in others) + m.cost.memory_bytes > s.memory_budget
        if not over:
            m.room_made = True
            return self._finish_load(m)
        if any(x.state in ("draining", "unloading") for x in others):
            return  # a victim is on its way out
        if not m.evict_ok and not m.waiters:  # a prefetch not confident enough to evict: skipped
            return self._abandon(m, "prefetch: no room")
        victim = choose_victim([Candidate(name=x.name, ready=x.state == "ready", pinned=False, in_flight=x.in_flight,
                                          last_used=x.last_used) for x in others], exclude=m.name)
        if victim is None:
            return self._no_fit(m, f"{m.name}: no loaded model can be evicted")
        v = self.models[victim]
        m.evicted = True
        self.counters["models.evictions"] += 1
        v.set_state("draining", f"evicted:for {m.name}")
        if v.in_flight == 0:
            self._unload(v)

    def _launched(self, m: SimModel) -> None:
        if m is self._loading and m.state == "loading":
            m.launched = True
            self._finish_load(m)

    def _finish_load(self, m: SimModel) -> None:
        if m.launched and m.room_made:
            extra = m.cost.swap_extra_s if m.evicted else 0.0
            self.loop.after(m.cost.load_s * (1 - LAUNCH) + extra, lambda: self._loaded(m))

    def _abandon(self, m: SimModel, why: str) -> None:
        """The load in progress ends without a model: its runner is discarded, the next load goes. Requests that
        asked for the model meanwhile try again (each gets its own answer, as each ``acquire`` does)."""
        m.set_state("unloaded", why)
        self._loading = None
        if m.waiters:
            self._loads.append(m)
        self._next_load()

    def _no_fit(self, m: SimModel, why: str) -> None:
        for job in list(m.waiters):
            self._fail(job, 507, f"HTTP 507: {why}")
        self._abandon(m, why)

    def _loaded(self, m: SimModel) -> None:
        m.set_state("ready", "loaded")
        self._loading = None
        m.last_used = self.loop.now
        for job in list(m.waiters):
            m.waiters.remove(job)
            job.record["load_wait_ms"] = round((self.loop.now - job.load_wait_s) * 1000, 3)
            self._send(m, job)
        if m.in_flight == 0 and self.settings.keep_alive >= 0:
            self.loop.after(self.settings.keep_alive, lambda e=m.idle_epoch: self._expire_idle(m, e))
        self._next_load()

    def _expire_idle(self, m: SimModel, epoch: int) -> None:
        if m.state == "ready" and m.in_flight == 0 and not m.waiters and m.idle_epoch == epoch:
            self._unload(m, "keep_alive")

    def _unload(self, m: SimModel, reason: str = "evicted") -> None:
        m.set_state("unloading", reason if reason != "evicted" else m.history[-1]["reason"])
        self.loop.after(m.cost.unload_s, lambda: self._unloaded(m))

    def _unloaded(self, m: SimModel) -> None:
        m.set_state("unloaded", "")
        self._load_step()
        if m.waiters:  # asked for while it was leaving: it loads again (after the loads queued before)
            self._ensure_loaded(m)
