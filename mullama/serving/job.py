"""One generation as every front end hands it to the serving layer (``generation.generate``).

The OpenAI and Ollama request parsers both produce a ``Job``; nothing in it depends on the API it came
from, so both front ends share one path through the scheduler, the lifecycle and the runner.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Literal

import msgspec

from mullama import wire
from mullama.config.presets import PresetSettings


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


def with_preset(job: Job, preset: PresetSettings) -> Job:
    """``job`` as its preset shapes it, as Ollama does: the preset's system prompt unless the conversation
    opens with its own, then the preset's few-shot messages, then the conversation; its chat template and
    its adapters unless the request sets them. A raw prompt is left alone. Its sampling defaults are
    ``PresetSettings.defaults``, for ``with_defaults``."""
    req = job.request
    changes: dict[str, Any] = {}
    if req.messages is not None and (preset.system or preset.messages):
        lead = 0
        while lead < len(req.messages) and req.messages[lead].role == "system":
            lead += 1
        system = [wire.ChatMessage(role="system", content=preset.system)] if preset.system and not lead else []
        shots = [wire.ChatMessage(role=m.role, content=m.content) for m in preset.messages]
        changes["messages"] = [*req.messages[:lead], *system, *shots, *req.messages[lead:]]
    if preset.template is not None and req.chat_template is None:
        changes["chat_template"] = preset.template
    if preset.adapters and req.lora is None:
        changes["lora"] = [wire.LoraRef(name=a.name, scale=a.scale) for a in preset.adapters]
    return dataclasses.replace(job, request=msgspec.structs.replace(req, **changes)) if changes else job


def adapter_key(request: wire.CompletionRequest) -> str | None:
    """The LoRA set a request asks for, as the scheduler's policies see it (``policies.Request.adapters``):
    "name-or-id:scale,..." in the order given; None for the model's default set."""
    if request.lora is None:
        return None
    return ",".join(f"{r.name if r.name is not None else r.id}:{r.scale:g}" for r in request.lora)
