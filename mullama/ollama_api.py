"""Ollama-compatible HTTP routes (/api/generate, /api/chat, /api/tags, ...). Filled in by issue 7."""

from __future__ import annotations

from aiohttp import web


def add_routes(app: web.Application) -> None:
    pass
