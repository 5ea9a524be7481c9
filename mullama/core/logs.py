"""Logging set-up: structlog in front, the stdlib logging tree underneath.

Every mullama logger and llama.cpp's own log lines (forwarded by the engine as
the stdlib logger ``llama.cpp``) end up in one handler on stderr, rendered by
structlog as JSON (``fmt="json"``) or for a terminal (``fmt="console"``).
"""

from __future__ import annotations

import logging
import sys

import structlog

_SHARED = [
    structlog.contextvars.merge_contextvars,
    structlog.stdlib.add_log_level,
    structlog.stdlib.add_logger_name,
    structlog.processors.TimeStamper(fmt="iso", utc=True),
]


def configure(level: str = "warning", fmt: str = "console") -> None:
    """Route structlog and stdlib logging to stderr at ``level`` in ``fmt``.

    llama.cpp's own threshold is the engine's (``engine.follow_log_level``): the processes that load
    the extension set it; this module never imports it.
    """
    if fmt not in ("console", "json"):
        raise ValueError(f"log format must be 'console' or 'json', got {fmt!r}")
    numeric = logging.getLevelName(level.upper())
    if not isinstance(numeric, int):
        raise ValueError(f"unknown log level {level!r}")
    renderer = (
        structlog.processors.JSONRenderer()
        if fmt == "json"
        else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    )
    structlog.configure(
        # filter first: a line below the level (a debug line per request) costs no timestamp or rendering
        processors=[structlog.stdlib.filter_by_level, *_SHARED, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(foreign_pre_chain=_SHARED, processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            # JSON: log.exception(...) carries its traceback as text; the console renderer prints it itself.
            *([structlog.processors.format_exc_info] if fmt == "json" else []),
            renderer,
        ])
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(numeric)
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
