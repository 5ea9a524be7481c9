"""OpenAPI paths and schemas of the Ollama-compatible and model-store routes. Filled in by issue 7."""

from __future__ import annotations

from typing import Any

TAG = {"name": "ollama", "description": "Ollama-compatible API and the model store"}


def paths() -> dict[str, Any]:
    return {}


def schemas() -> dict[str, Any]:
    return {}
