"""The runner's HTTP surface: bearer-token auth, the error body shape, and
malformed requests (each a 4xx with ``{"error": {"type", "message"}}``, the
runner still serving afterwards)."""

from __future__ import annotations

import json

import pytest

from runner_harness import (  # noqa: F401  (client is a fixture)
    TOKEN, Client, assert_error, client, greedy, load_model, running,
)

N_CTX = 2048
GOOD = {"prompt": "Hello there", "max_tokens": 2, "temperature": 0.0}


@pytest.fixture(scope="module")
def runner(tmp_path_factory):
    with running(tmp_path_factory.mktemp("runner-http")) as r:
        load_model(r, n_parallel=2, n_ctx=N_CTX)
        yield r


@pytest.fixture(autouse=True)
async def _still_serving(runner):
    """After every test the runner is up, ready and idle (test_zz_... completes a request at the end)."""
    yield
    assert runner.alive(), "the runner died"
    async with Client(runner) as c:
        assert (await c.health())["status"] == "ready"
        stats = await c.stats()
        assert stats["active"] == 0 and stats["queued"] == 0


# ---------------------------------------------------------------- auth


@pytest.mark.parametrize("token", [None, "wrong-token", "", TOKEN + "x", TOKEN[:-1]])
@pytest.mark.parametrize("method,path,body", [
    ("GET", "/health", None), ("GET", "/stats", None), ("GET", "/kv", None),
    ("POST", "/completion", GOOD), ("POST", "/load", {"op": "close"}), ("POST", "/cancel", {"id": "x"}),
    ("GET", "/no-such-route", None),
])
async def test_missing_or_wrong_token_is_401(runner, token, method, path, body):
    async with Client(runner, token=token) as c:
        status, out = await c.request(method, path, body)
    assert_error(status, out, 401, "authentication_error")


async def test_token_without_bearer_scheme_is_401(runner):
    async with Client(runner, token=None) as c:
        for value in (TOKEN, f"bearer {TOKEN}", f"Basic {TOKEN}", f"Bearer  {TOKEN}"):
            status, out = await c.request("GET", "/health", headers={"Authorization": value})
            assert_error(status, out, 401, "authentication_error")


async def test_right_token_is_200(runner, client):
    status, out = await client.get("/health")
    assert status == 200 and out["status"] == "ready"
    status, out = await client.post("/completion", {**GOOD, "stream": False})
    assert status == 200 and out["done"] is True


# ---------------------------------------------------------------- malformed bodies


RAW_BODIES = {
    "not_json": b"{this is not json",
    "json_array": b'[{"prompt": "x"}]',
    "json_string": b'"prompt"',
    "json_null": b"null",
    "empty": b"",
    "truncated": b'{"prompt": "x", "max_tokens": ',
    "bad_utf8": b'{"prompt": "\xff\xfe", "max_tokens": 2}',
}


@pytest.mark.parametrize("name", list(RAW_BODIES))
async def test_unparsable_body_is_400(client, name):
    status, out = await client.post("/completion", data=RAW_BODIES[name],
                                     headers={"Content-Type": "application/json"})
    assert_error(status, out, 400, "invalid_request_error")


BAD_REQUESTS = {
    # wrong types
    "prompt_int": {"prompt": 5},
    "max_tokens_str": {"prompt": "x", "max_tokens": "many"},
    "max_tokens_float": {"prompt": "x", "max_tokens": 2.5},
    "stream_str": {"prompt": "x", "stream": "yes"},
    "tokens_str": {"tokens": "1 2 3"},
    "tokens_floats": {"tokens": [1.5, 2.0]},
    "stop_str": {"prompt": "x", "stop": "."},
    "temperature_str": {"prompt": "x", "temperature": "hot"},
    "logit_bias_key": {"prompt": "x", "logit_bias": {"abc": 1.0}},
    "logit_bias_triple": {"prompt": "x", "logit_bias": [[1, 2.0, 3]]},
    # unknown fields
    "unknown_field": {"prompt": "x", "bogus": 1},
    "misspelled_field": {"prompt": "x", "max_token": 4},
    # prompt / tokens
    "both_prompt_and_tokens": {"prompt": "x", "tokens": [1, 2]},
    "neither": {"max_tokens": 4},
    "empty_object": {},
    "empty_prompt": {"prompt": ""},
    "empty_tokens": {"tokens": []},
    # ranges
    "max_tokens_minus_2": {"prompt": "x", "max_tokens": -2},
    "top_p_5": {"prompt": "x", "top_p": 5},
    "min_p_2": {"prompt": "x", "min_p": 2},
    "repeat_penalty_0": {"prompt": "x", "repeat_penalty": 0},
    "temperature_huge": {"prompt": "x", "temperature": 1e300},
    "repeat_limit_negative": {"prompt": "x", "repeat_limit": -1},
    "seed_2_pow_33": {"prompt": "x", "seed": 2 ** 33},
    "empty_id": {"prompt": "x", "id": ""},
    "logit_bias_token_out_of_range": {"prompt": "x", "logit_bias": {"49152": 1.0}},
    # constrained output
    "invalid_grammar": {"prompt": "x", "grammar": 'root ::= "unterminated'},
    "grammar_without_root": {"prompt": "x", "grammar": 'other ::= "x"'},
    "invalid_json_schema_type": {"prompt": "x", "json_schema": {"type": 12}},
    "invalid_json_schema_ref": {"prompt": "x", "json_schema": {
        "type": "object", "properties": {"a": {"$ref": "#/definitions/missing"}}}},
    "grammar_and_json_schema": {"prompt": "x", "grammar": 'root ::= "x"', "json_schema": {"type": "object"}},
}


@pytest.mark.parametrize("name", list(BAD_REQUESTS))
@pytest.mark.parametrize("stream", [False, True])
async def test_bad_completion_request_is_400(client, name, stream):
    body = {"stream": stream, **BAD_REQUESTS[name]}
    status, out = await client.post("/completion", body)
    assert_error(status, out, 400)


@pytest.mark.parametrize("tokens", [[49152], [-1], [1, 2, 10 ** 6]], ids=["n_vocab", "negative", "million"])
async def test_token_id_out_of_range_is_400(client, tokens):
    status, out = await client.post("/completion", {"tokens": tokens, "max_tokens": 2})
    detail = assert_error(status, out, 400, "invalid_request_error")
    assert "out of range" in detail["message"] or ">= 0" in detail["message"]


# Integers that do not fit the engine's 32-bit fields must be rejected as bad
# requests (400), not crash the handler into a 500 "server_error".
@pytest.mark.parametrize("body", [
    {"tokens": [2 ** 31]},
    {"tokens": [2 ** 40]},
    {"prompt": "x", "top_k": 2 ** 40},
    {"prompt": "x", "repeat_last_n": 2 ** 40},
    {"prompt": "x", "repeat_limit": 2 ** 40},
    {"prompt": "x", "seed": 2 ** 70},
    {"prompt": "x", "logit_bias": {"99999999999": 1.0}},
], ids=["token_2^31", "token_2^40", "top_k_2^40", "repeat_last_n_2^40", "repeat_limit_2^40", "seed_2^70",
        "logit_bias_key_2^36"])
async def test_integer_overflow_is_400_not_500(client, body):
    status, out = await client.post("/completion", {**body, "max_tokens": 2, "stream": False})
    assert_error(status, out, 400)


async def test_load_integer_overflow_is_400_not_500(client):
    status, out = await client.post("/load", {"op": "fit", "model": "/nonexistent.gguf", "n_ctx": 2 ** 40})
    assert_error(status, out, 400)


async def test_prompt_longer_than_the_context_is_400_naming_the_lengths(client):
    prompt = "hello " * (N_CTX + 500)
    n = len((await client.ok("POST", "/tokenize", {"content": prompt}))["tokens"])
    assert n > N_CTX
    status, out = await client.post("/completion", {"prompt": prompt, "max_tokens": 4})
    detail = assert_error(status, out, 400, "context_length_exceeded")
    assert str(n) in detail["message"] and str(N_CTX) in detail["message"], detail


async def test_prompt_that_fills_the_context_ends_with_context_full(client):
    toks = (await client.ok("POST", "/tokenize", {"content": "hello " * 3000}))["tokens"][: N_CTX - 6]
    out = await client.complete({"tokens": toks, "max_tokens": 64, "temperature": 0.0, "ignore_eos": True})
    assert out["finish_reason"] == "context_full", out["finish_reason"]
    # every generated token but the last is decoded into the context: at most n_ctx - prompt + 1 of them
    room = N_CTX - out["stats"]["prompt_tokens"]
    assert room <= out["stats"]["completion_tokens"] <= room + 1, out["stats"]


async def test_body_over_the_size_limit_is_413(client):
    body = b'{"prompt": "' + b"a" * (33 << 20) + b'"}'
    status, out = await client.post("/completion", data=body, headers={"Content-Type": "application/json"})
    assert_error(status, out, 413)


async def test_unknown_route_is_404_and_wrong_method_405(client):
    status, out = await client.get("/v1/nothing-here")
    assert_error(status, out, 404, "not_found_error")
    status, out = await client.post("/nothing", {"x": 1})
    assert_error(status, out, 404, "not_found_error")
    status, out = await client.get("/completion")
    assert_error(status, out, 405)


@pytest.mark.parametrize("path,body", [
    ("/load", {"op": "alloc", "model": 5}),
    ("/load", {"op": "alloc", "n_ctx": "big"}),
    ("/load", {"op": "fit", "bogus": True}),
    ("/cancel", {}),
    ("/cancel", {"id": 5}),
    ("/pause", {"rid": "x"}),
    ("/tokenize", {"text": "x"}),
    ("/detokenize", {"tokens": "x"}),
    ("/apply-template", {"messages": "hi"}),
])
async def test_bad_bodies_on_other_routes_are_400(client, path, body):
    status, out = await client.post(path, body)
    assert_error(status, out, 400, "invalid_request_error")


async def test_load_ops_on_a_ready_runner_are_refused_without_harm(client):
    status, out = await client.post("/load", {"op": "commit"})
    assert_error(status, out, 409, "invalid_state")
    status, out = await client.post("/load", {"op": "alloc", "model": "/nonexistent.gguf"})
    assert_error(status, out, 409, "invalid_state")


async def test_zz_still_serves_after_all_the_bad_requests(runner, client):
    out = await client.complete(GOOD)
    assert out["stats"]["completion_tokens"] == 2
    stats = await client.stats()
    assert stats["status"] == "ready" and stats["pid"] == runner.pid


def test_zz_stderr_is_json_lines_after_all_the_bad_requests(runner):
    """Every stderr line is a JSON log record, even after invalid grammars and 500s."""
    bad = []
    for ln in runner.stderr_text().splitlines():
        if not ln.strip():
            continue
        try:
            json.loads(ln)
        except json.JSONDecodeError:
            bad.append(ln)
    assert not bad, f"{len(bad)} stderr lines are not JSON: {bad[:6]}"
