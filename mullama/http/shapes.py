"""What every route module answers with: JSON bodies, stream headers, error types per status.

One place for the headers of a stream (SSE, NDJSON), for the error ``type`` each HTTP status gets in
OpenAI's shape, and for decoding small management bodies with a 400 that says what was wrong.
"""

from __future__ import annotations

import msgspec
from aiohttp import web

from mullama.core import errors

SSE_HEADERS = {"Content-Type": "text/event-stream", "Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
NDJSON = "application/x-ndjson"
NDJSON_HEADERS = {"Content-Type": NDJSON, "Cache-Control": "no-cache", "X-Accel-Buffering": "no"}

#: aiohttp's own HTTP errors (no route, wrong method, body too large ...) -> our error type
HTTP_TYPES = {401: "authentication_error", 403: "permission_error", 404: "not_found_error",
              405: "invalid_request_error", 413: "request_too_large", 415: "invalid_request_error"}

#: OpenAI's error types; our finer types travel in ``code`` (e.g. context_length_exceeded, model_not_found)
OPENAI_TYPES = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
                404: "invalid_request_error", 405: "invalid_request_error", 408: "timeout",
                409: "invalid_request_error", 413: "invalid_request_error", 414: "invalid_request_error",
                415: "invalid_request_error", 422: "invalid_request_error", 429: "rate_limit_error"}


def openai_kind(status: int, type_: str) -> tuple[str, str | None]:
    """(OpenAI error type, code) for one of our errors."""
    kind = OPENAI_TYPES.get(status, "server_error")
    return kind, (None if type_ == kind else type_)


def json_response(obj: object, status: int = 200) -> web.Response:
    """A JSON answer encoded with msgspec (the one helper every route module uses)."""
    return web.Response(body=msgspec.json.encode(obj), status=status, content_type="application/json")


def decode_body(raw: bytes, kind, expected: str = ""):
    """A small management body as ``kind``; 400 saying what was wrong (and what is ``expected``)."""
    try:
        return msgspec.json.decode(raw or b"{}", type=kind)
    except (msgspec.ValidationError, msgspec.DecodeError, UnicodeDecodeError, RecursionError) as exc:
        text = "not valid UTF-8" if isinstance(exc, UnicodeDecodeError) else \
            "nested too deeply" if isinstance(exc, RecursionError) else str(exc)
        raise errors.InvalidArgument(f"invalid request body: {text}" + (f" (expected {expected})" if expected else "")
                                     ) from None
