"""The wire types' common base and bounded scalar types (see ``mullama.wire``)."""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

# Bounded integers: the engine takes 32-bit values, so larger ones are a 400 here.
Int32 = Annotated[int, msgspec.Meta(ge=-(2**31), le=2**31 - 1)]
Count = Annotated[int, msgspec.Meta(ge=0, le=2**31 - 1)]
TokenId = Annotated[int, msgspec.Meta(ge=0, le=2**31 - 1)]
Seed = Annotated[int, msgspec.Meta(ge=-1, le=2**32 - 1)]
Bytes = Annotated[int, msgspec.Meta(ge=0, le=2**63 - 1)]  # a size in bytes (the engine takes int64)

HealthStatus = Literal["starting", "loading", "warming", "ready", "draining", "error"]
LoadOp = Literal["fit", "alloc", "commit", "close"]
FinishReason = Literal["stop", "length", "cancelled", "repeat_limit", "context_full", "error"]


class _Wire(msgspec.Struct, kw_only=True, forbid_unknown_fields=True, omit_defaults=False):
    pass
