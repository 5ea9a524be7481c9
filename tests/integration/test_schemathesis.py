"""Schemathesis against the live ``/openapi.json`` of one real ``mullama serve``: for every documented
operation, generated requests (valid and invalid ones) must never get a server error, and every answer
must fit the documented response schema and be one of the documented status codes.

The run is bounded: ``EXAMPLES`` per operation in plain ``pytest`` (well under a minute on 2 cores),
``SLOW_EXAMPLES`` under ``-m slow``. The server has a tiny context and token cap so a generated chat
costs a few tokens. Left out, each for a reason that is about the test, not the server:

* ``GET /internal/events``: without ``follow=0`` it is a live event stream that never ends;
  ``tests/unit/test_openapi_app.py::test_events_is_an_event_stream`` checks its shape.
* ``POST /api/pull``, ``DELETE /api/delete``, ``POST /api/copy``: the model store's routes (another
  module's owner tests them against a local fake hub); generated names would try to reach a real hub,
  delete or copy model files in the models directory the rest of this run serves from.
* ``POST /api/create``: a generated preset is a file in the shared test models directory, which every
  later run would list; ``tests/unit/test_presets_api.py`` checks its answers against the document.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from supervisor_harness import Server, base_settings, q8_variant

from mullama.http.openai import format as openai
from mullama.http.openapi import spec as openapi_spec

EXAMPLES = 30
HEAVY_EXAMPLES = 10
SLOW_EXAMPLES = 100
#: the operations that run the model for every example: chat, completion, responses, messages and embeddings
HEAVY = (r"^/(v1/(chat/completions|completions|embeddings|responses|messages|messages/count_tokens)"
         r"|api/(generate|chat|embed|embeddings))$")
CHECKS = [not_a_server_error, response_schema_conformance, status_code_conformance, content_type_conformance]
EXCLUDED = {
    ("GET", "/internal/events"),
    ("POST", "/api/pull"),
    ("DELETE", "/api/delete"),
    ("POST", "/api/copy"),
    ("POST", "/api/create"),
}


LIMITS = {"max_tokens_limit": 8, "max_messages": 16, "max_stop": 4}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    q8_variant()
    srv = Server(
        tmp_path_factory.mktemp("schemathesis"),
        base_settings(
            threads=1,
            threads_batch=1,
            n_ctx=128,
            n_parallel=2,
            keep_alive="1h",
            max_body_bytes="256KiB",
            **LIMITS,
        ),
    )
    try:
        yield srv
    finally:
        srv.stop()


def _document() -> dict:
    """The document the server above serves: ``spec()`` with its limits (``test_served_document`` checks)."""
    return openapi_spec.spec(
        openai.Limits(
            max_tokens=LIMITS["max_tokens_limit"],
            max_messages=LIMITS["max_messages"],
            max_stop=LIMITS["max_stop"],
        )
    )


def _config(examples: int, heavy_examples: int, coverage: bool) -> schemathesis.Config:
    """``examples`` per operation; ``heavy_examples`` for the ones that run the model (each embedding
    request builds a context: ~0.5 s on one thread). The coverage phase (every boundary of every field)
    runs only in the slow test."""
    return schemathesis.Config.from_dict(
        {
            "phases": {"coverage": {"enabled": coverage}},
            "generation": {"max-examples": examples, "deterministic": not coverage},
            "operations": [{"include-path-regex": HEAVY, "generation": {"max-examples": heavy_examples}}],
        }
    )


def _generation_document() -> dict:
    """``_document()`` less the chat request's one-token-cap rule. With every field of the chat request
    documented, the request is past what schemathesis' canonicaliser (jsonschema_rs) models whole, and it
    would generate nothing for the route; without one whole-object rule it fits. Nothing is lost for the
    checks: the server still refuses both caps together, and that 400 is a documented answer."""
    doc = _document()
    chat = doc["components"]["schemas"]["ChatCompletionRequest"]
    chat["allOf"] = [rule for rule in chat["allOf"]
                     if rule.get("not", {}).get("required") != ["max_tokens", "max_completion_tokens"]]
    return doc


def _schema(config: schemathesis.Config):
    # Loaded from spec() here, not from the live server, because pytest collects before any fixture
    # runs (schemathesis' ``from_fixture`` fails under this pytest); ``test_served_document`` proves the
    # served document is ``_document()``.
    return schemathesis.openapi.from_dict(_generation_document(), config=config).exclude(
        func=lambda ctx: (ctx.operation.method.upper(), ctx.operation.path) in EXCLUDED
    )


schema = _schema(_config(EXAMPLES, HEAVY_EXAMPLES, coverage=False))
slow_schema = _schema(_config(SLOW_EXAMPLES, SLOW_EXAMPLES // 5, coverage=True))
_HEALTH = [
    HealthCheck.too_slow,
    HealthCheck.filter_too_much,
    HealthCheck.data_too_large,
    HealthCheck.function_scoped_fixture,
]


def test_served_document(server: Server) -> None:
    status, served = server.call("GET", "/openapi.json")
    assert status == 200
    assert served == json.loads(json.dumps(_document()))


def _check(case, server: Server) -> None:
    case.call_and_validate(base_url=server.url, checks=CHECKS, timeout=120)
    assert server.proc.poll() is None


@schema.parametrize()
@settings(deadline=None, suppress_health_check=_HEALTH)
def test_api_conforms(case, server: Server) -> None:
    _check(case, server)


@pytest.mark.slow
@slow_schema.parametrize()
@settings(deadline=None, suppress_health_check=_HEALTH)
def test_api_conforms_long(case, server: Server) -> None:
    _check(case, server)
