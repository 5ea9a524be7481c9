"""Embeddings in the runner: a context of their own per request, a few inputs per call, so that a
request whose caller left (or a runner that is closing) stops at the next chunk."""

from __future__ import annotations

import asyncio
import threading

import structlog

from mullama import engine
from mullama.core.errors import InvalidArgument, OperationAborted

log = structlog.get_logger("mullama.runner")

#: inputs embedded per call: between two, a cancelled or closing embedding stops
EMBED_CHUNK = 4


async def embed(loaded, texts: list[str], stops: set[threading.Event]) -> tuple[list[list[float]], int]:
    """(one vector per text, prompt tokens); ``stops`` holds this request's stop flag while it runs."""
    model = loaded.model
    inputs = [model.tokenize(t, True, False) for t in texts]
    if any(not t for t in inputs):
        raise InvalidArgument("cannot embed an empty string")
    stop = threading.Event()

    def run() -> list[list[float]]:
        longest = max(len(t) for t in inputs)
        ctx = engine.Context(model, engine.ContextParams(
            n_ctx=max(512, longest + 1), n_batch=max(512, longest), n_ubatch=max(512, longest),
            n_seq_max=min(len(inputs), 8), n_threads=loaded.params.n_threads, embeddings=True, kv_unified=True,
            pooling=loaded.params.pooling))
        try:
            out: list[list[float]] = []
            for i in range(0, len(inputs), EMBED_CHUNK):  # a chunk at a time: a caller gone stops it
                if stop.is_set():
                    raise OperationAborted("embedding cancelled: its client left or the runner is closing")
                out += ctx.embed(inputs[i:i + EMBED_CHUNK])
            return out
        finally:
            ctx.close()

    work = asyncio.ensure_future(asyncio.to_thread(run))
    stops.add(stop)
    try:
        vectors = await asyncio.shield(work)
    except asyncio.CancelledError:
        stop.set()
        work.add_done_callback(_stopped)
        raise
    finally:
        stops.discard(stop)
    return vectors, sum(len(t) for t in inputs)


def _stopped(work: asyncio.Future) -> None:
    """The thread of an embedding whose caller left has ended (at the next chunk, or done anyway)."""
    error = None if work.cancelled() else work.exception()
    log.info("embedding_cancelled", stopped_early=isinstance(error, OperationAborted))
