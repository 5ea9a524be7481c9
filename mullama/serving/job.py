"""One generation as every front end hands it to the serving layer (``generation.generate``).

The OpenAI and Ollama request parsers both produce a ``Job``; nothing in it depends on the API it came
from, so both front ends share one path through the scheduler, the lifecycle and the runner.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import msgspec

from mullama import wire


@dataclass(frozen=True)
class Job:
    """One generation the supervisor schedules; ``request.stream`` is always True (the runner streams)."""

    kind: Literal["chat", "completion"]
    model: str                          # as the client named it; "" means the server's default
    request: wire.CompletionRequest
    stream: bool                        # what the client asked
    include_usage: bool                 # stream_options.include_usage
    priority: int = 0
    deadline_ms: float | None = None
    keep_alive: float | None = None     # seconds; -1 forever (units.parse_duration)
    user: str | None = None
    given: frozenset[str] = frozenset()  # request fields the client set (the rest are runner defaults)
    echo: bool = False                  # /v1/completions: the answer starts with the prompt


def with_defaults(job: Job, defaults: tuple[tuple[str, Any], ...]) -> wire.CompletionRequest:
    """``job``'s request with a model's sampling defaults (``[models.NAME.sampling]``) for the fields the
    client left out (``job.given``)."""
    missing = {name: list(v) if isinstance(v, tuple) else v for name, v in defaults if name not in job.given}
    return msgspec.structs.replace(job.request, **missing) if missing else job.request
