"""The generation path every API front end shares: resolve, schedule, acquire, run on the runner
(``generate`` for completions, ``embed`` for embeddings).

``generate(sup, job, ...)`` takes a parsed ``Job`` and a ``respond`` callback that writes the answer in
its API's shape (OpenAI SSE or JSON, Ollama NDJSON or JSON); the scheduler slot and the lifecycle lease
are always given back. ``Generation`` is one request in flight: what ``respond`` uses to read the
runner's stream, and to turn its end into a profile, metrics and an event. No HTTP here.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, TypeVar

import msgspec
import structlog

from mullama import wire
from mullama.core import errors
from mullama.observe.profiles import build_profile
from mullama.serving.job import Job, adapter_key, with_defaults, with_preset
from mullama.serving.policies import Request
from mullama.serving.runtime import State

if TYPE_CHECKING:
    from mullama.models.presets import Preset
    from mullama.runners.client import CompletionStream
    from mullama.serving.supervisor import Supervisor

log = structlog.get_logger("mullama.api")

T = TypeVar("T")

#: How a front end answers one generation: given the ``Generation`` and the runner's stream, it writes
#: the whole response (streamed or collected) and returns it.
Respond = Callable[["Generation", "CompletionStream"], Awaitable[T]]


async def generate(sup: Supervisor, job: Job, respond: Respond[T], *, user: str, profile: bool = False) -> T:
    """Resolve, schedule, re-route, acquire, run on the runner; ``respond`` writes the answer in its API's
    shape. ``user`` is the fairness key; ``profile`` asks for the X-Profile in the answer. A preset's request
    goes to its base's runner, shaped by the preset, and is answered under the preset's name."""
    sup.check_open()
    job, preset = _shaped(sup, job)
    entry = sup.resolve(job.model)
    sup.lifecycle.runtime(entry)  # the scheduler reads its n_parallel
    sup.prefetcher.observe(entry.name)
    chat = job.kind == "chat"
    rid = ("chatcmpl-" if chat else "cmpl-") + uuid.uuid4().hex[:24]
    created = int(time.time())
    t0 = time.perf_counter()
    prompt_chars = len(job.request.prompt or "") + sum(len(m.content or "") for m in job.request.messages or ())
    req = Request(id=rid, model=entry.name, user=user, priority=job.priority,
                  deadline=time.monotonic() + job.deadline_ms / 1000 if job.deadline_ms else None,
                  prompt_chars=prompt_chars, max_tokens=job.request.max_tokens, adapters=adapter_key(job.request))
    ticket = await _submit(sup, req, preset.name if preset else None)
    try:
        routed = _route_again(sup, job.model, entry)  # a variant switch while it was queued moves it over
        if routed.name != entry.name:
            entry = routed
            sup.lifecycle.runtime(entry)
        run = Generation(sup, job, rid, created, preset.name if preset else entry.name, t0, ticket, profile)
        lease = await sup.lifecycle.acquire(entry, keep_alive=job.keep_alive)
        try:
            run.lease = lease
            try:
                defaults = sup.runner_config(entry).sampling + (preset.settings.defaults() if preset else ())
                request = with_defaults(job, defaults)
                stream = await lease.client.completion(msgspec.structs.replace(request, id=rid, stream=True))
            except errors.MullamaError as exc:
                raise run.explain(exc) from None
            ticket.control = lambda op: lease.client.control(op, rid)
            try:
                return await respond(run, stream)
            finally:
                stream.close()  # before the end (client gone, error): the runner cancels the request
        finally:
            sup.lifecycle.release(lease)
    except errors.MullamaError as exc:
        sup.observer.metrics.request_failed(preset.name if preset else entry.name, exc.type)
        raise
    finally:
        sup.scheduler.finish(ticket)
        sup.prefetcher.idle()


@dataclass(frozen=True)
class Embedded:
    model: str
    vectors: list[list[float]]
    prompt_tokens: int
    load_ms: float
    total_ms: float


async def embed(sup: Supervisor, model: str, inputs: list[str], *, user: str,
                keep_alive: float | None = None) -> Embedded:
    """Embeddings through the same scheduler as completions: queued (429 over the bounds), one slot of the
    model while they run, shown in /internal/scheduler, cancelled in the runner when the client leaves.
    No inputs: only load the model (Ollama's preload)."""
    sup.check_open()
    t0 = time.perf_counter()
    entry = sup.resolve(model)
    sup.lifecycle.runtime(entry)  # the scheduler reads its n_parallel
    req = Request(id="embd-" + uuid.uuid4().hex[:24], model=entry.name, user=user,
                  prompt_chars=sum(len(t) for t in inputs), max_tokens=0)
    ticket = await _submit(sup, req)
    try:
        lease = await sup.lifecycle.acquire(entry, keep_alive=keep_alive)
        try:
            vectors, tokens = [], 0
            if inputs:
                result = await lease.client.embedding(inputs)
                vectors, tokens = result.embeddings, result.prompt_tokens
        finally:
            sup.lifecycle.release(lease)
    except errors.MullamaError as exc:
        sup.observer.metrics.request_failed(entry.name, exc.type)
        raise
    finally:
        sup.scheduler.finish(ticket)
    preset = sup.preset(model)
    return Embedded(preset.name if preset else entry.name, vectors, tokens, lease.load_wait_ms,
                    (time.perf_counter() - t0) * 1000)


async def count_prompt(sup: Supervisor, job: Job) -> tuple[str, int]:
    """(the model, the size of ``job``'s prompt as its runner would evaluate it): rendered and tokenized by
    the runner, nothing evaluated. The model is loaded if it is not; the scheduler is not involved (no
    slot is taken), so counting never waits behind generations."""
    sup.check_open()
    job, preset = _shaped(sup, job)
    entry = sup.resolve(job.model)
    lease = await sup.lifecycle.acquire(entry, keep_alive=job.keep_alive)
    try:
        return preset.name if preset else entry.name, await lease.client.count(job.request)
    finally:
        sup.lifecycle.release(lease)


def _shaped(sup: Supervisor, job: Job) -> tuple[Job, Preset | None]:
    """``job`` as the preset it names shapes it (system prompt, few-shot, template, adapters), and the preset."""
    preset = sup.preset(job.model)
    return (with_preset(job, preset.settings) if preset is not None else job), preset


async def _submit(sup: Supervisor, req: Request, preset: str | None = None):
    """The scheduler's ticket for ``req`` once it may run; a refusal (429, deadline, shutdown) is counted
    (under the preset's name for a preset's request, as its other request metrics are)."""
    try:
        return await sup.scheduler.submit(req)
    except errors.MullamaError as exc:
        sup.observer.metrics.request_failed(preset or req.model, exc.type)
        raise


def _route_again(sup: Supervisor, name: str, entry):
    try:
        return sup.resolve(name)
    except errors.MullamaError:
        return entry


class Generation:
    """One generation in flight: reading the runner's stream, its profile, metrics and events."""

    def __init__(self, sup: Supervisor, job: Job, rid: str, created: int, model: str, t0: float,
                 ticket, profile: bool) -> None:
        self.sup, self.job, self.rid, self.created, self.model, self.t0 = sup, job, rid, created, model, t0
        self.ticket, self.want_profile = ticket, profile
        self.lease = None
        self.chat = job.kind == "chat"

    def done(self, final: wire.CompletionFinal) -> dict:
        """The profile (always built: it feeds the metrics); events and metrics for a finished request."""
        lease = self.lease
        profile = build_profile(stats=final.stats, model=self.model, scheduler=self.sup.scheduler.policy.name,
                                runner_pid=lease.handle.pid if lease else None, queue_ms=self.ticket.queue_ms,
                                load_ms=lease.load_wait_ms if lease else 0.0,
                                total_ms=(time.perf_counter() - self.t0) * 1000,
                                preemptions=self.ticket.request.preemptions,
                                kv_evicted=final.stats.evicted_tokens)
        self.sup.observer.request_done(self.model, profile, final.finish_reason)
        self.sup.observer.emit("finished", id=self.rid, model=self.model, finish_reason=final.finish_reason,
                               prompt_tokens=profile["prompt_tokens"], completion_tokens=profile["completion_tokens"],
                               total_ms=profile["total_ms"])
        return profile

    def explain(self, exc: errors.MullamaError) -> errors.MullamaError:
        """A runner crash caused by a timed-out drain, told as the unload it was; other errors as they are."""
        rt = self.lease.runtime if self.lease else None
        if isinstance(exc, errors.RunnerCrashed) and self.lease is not None and self.lease.handle.stalled:
            return errors.RunnerError(f"{self.model}'s runner stopped responding ({self.lease.handle.stalled}) and "
                                      "was stopped; the next request starts a new one", 502, "runner_unresponsive")
        if isinstance(exc, errors.RunnerCrashed) and rt is not None and rt.drain_killed and rt.state in (
                State.DRAINING, State.UNLOADING, State.UNLOADED):
            return errors.RunnerError(f"{self.model} was unloaded before this request finished (the drain "
                                      "timeout ran out)", 503, "model_unloaded")
        return exc

    def failed(self, exc: errors.MullamaError) -> errors.MullamaError:
        """An error after the response started (it goes into the stream): explained, logged, counted."""
        exc = self.explain(exc)
        log.warning("stream_failed", id=self.rid, model=self.model, type=exc.type, error=str(exc))
        self.sup.observer.metrics.request_failed(self.model, exc.type)
        return exc

    def client_stalled(self, timeout: float) -> None:
        """The client stopped reading a streamed answer for ``timeout`` s: its connection is cut (counted)."""
        log.warning("client_stalled", id=self.rid, model=self.model, timeout_s=timeout)
        self.sup.observer.metrics.request_failed(self.model, "client_stalled")
        self.sup.observer.emit("client_stalled", id=self.rid, model=self.model, timeout_s=timeout)

    def generation_failed(self) -> None:
        """The runner ended the stream with ``finish_reason: error`` (counted; the front end says so)."""
        self.sup.observer.metrics.request_failed(self.model, "generation_failed")

    async def gather(self, stream: CompletionStream) -> tuple[wire.CompletionFinal, str]:
        """A non-streamed answer: the runner's final frame and the whole text (of the first choice)."""
        final, answers = await self.gather_choices(stream)
        return final, answers[0].text

    async def gather_choices(self, stream: CompletionStream) -> tuple[wire.CompletionFinal, list[Answer]]:
        """A non-streamed answer: the runner's final frame and every choice, by index. Errors are raised
        (nothing was sent yet: the error middleware answers them and ``generate`` counts them)."""
        answers = [Answer(i) for i in range(self.job.request.n)]
        first = True
        try:
            async for _, ev in stream:
                if ev.content and first:
                    first = False
                    self.sup.observer.emit("first_token", id=self.rid, model=self.model)
                answers[ev.index].add(ev)
        except errors.MullamaError as exc:
            raise self.explain(exc) from None
        final = stream.final
        if final.finish_reason == "error":
            raise errors.RunnerError(f"generation failed: {final.error}", 500, "server_error")
        return final, answers

    async def relay(self, stream: CompletionStream, write: Callable[[str], Awaitable[object]],
                    write_deltas: Callable[[list[wire.ChatDelta]], Awaitable[object]] | None = None) -> None:
        """Each piece of text of a streamed answer to ``write`` (the first one is an event); for a parsed
        chat, the parsed changes to ``write_deltas`` instead (content, reasoning, tool-call pieces)."""
        async def frame(ev: wire.CompletionChunk | wire.CompletionFinal) -> None:
            if ev.deltas is not None and write_deltas is not None:
                if ev.deltas:
                    await write_deltas(ev.deltas)
            elif ev.content:
                await write(ev.content)

        await self.relay_frames(stream, frame)

    async def relay_frames(self, stream: CompletionStream,
                           on_frame: Callable[[wire.CompletionChunk | wire.CompletionFinal], Awaitable[object]]
                           ) -> None:
        """Each frame of a streamed answer (every choice's chunks, the final one last) to ``on_frame``."""
        first = True
        async for _, ev in stream:
            if ev.content and first:
                first = False
                self.sup.observer.emit("first_token", id=self.rid, model=self.model)
            await on_frame(ev)


@dataclass
class Answer:
    """One choice of a collected answer: its text, the log-probabilities of its tokens, how it ended."""

    index: int
    text: str = ""
    logprobs: list[wire.TokenLogprob] | None = None
    finish_reason: str = ""
    message: wire.ChatResult | None = None
    _pieces: list[str] = field(default_factory=list)

    def add(self, ev: wire.CompletionChunk | wire.CompletionFinal) -> None:
        self._pieces.append(ev.content)
        if ev.logprobs is not None:
            if self.logprobs is None:
                self.logprobs = []
            self.logprobs.extend(ev.logprobs)
        end = ev if isinstance(ev, wire.CompletionFinal) else ev.end
        if end is not None:
            self.finish_reason, self.message = end.finish_reason, end.message
            self.text = "".join(self._pieces)
