"""llama-server's /tokenize and /detokenize on mullama serve: any model's vocabulary by ``model`` (loaded on
demand), the default model without it, llama-server's defaults (no BOS), and clear errors for bad input."""

from __future__ import annotations

import pytest
from supervisor_harness import Server, assert_openai_error, base_settings


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Server:
    srv = Server(tmp_path_factory.mktemp("tokenize"), base_settings())
    yield srv
    srv.stop()


def test_a_text_round_trips_through_the_models_vocabulary(server: Server) -> None:
    status, body = server.call("POST", "/tokenize", {"content": "Hello world, hello sea.", "model": "smollm2"})
    assert status == 200 and body["tokens"] and all(isinstance(t, int) for t in body["tokens"])
    status, back = server.call("POST", "/detokenize", {"tokens": body["tokens"], "model": "smollm2"})
    assert status == 200 and back == {"content": "Hello world, hello sea."}
    _, default = server.call("POST", "/tokenize", {"content": "Hello world, hello sea."})
    assert default == body  # no model: the default model
    _, special = server.call("POST", "/tokenize", {"content": "Hello", "add_special": True})
    _, plain = server.call("POST", "/tokenize", {"content": "Hello"})
    assert len(special["tokens"]) >= len(plain["tokens"])


def test_a_prompt_of_an_exact_token_count(server: Server) -> None:
    """What the bench's trace replay relies on: the first N tokens, detokenised, tokenise back to N."""
    _, long = server.call("POST", "/tokenize", {"content": "the of and to in is you that it he was " * 20})
    for n in (1, 17, 100):
        _, text = server.call("POST", "/detokenize", {"tokens": long["tokens"][:n]})
        _, again = server.call("POST", "/tokenize", {"content": text["content"]})
        assert len(again["tokens"]) == n


@pytest.mark.parametrize("path, body, status, needle", [
    ("/tokenize", {"content": "x", "with_pieces": True}, 400, "with_pieces"),
    ("/tokenize", {"content": 3}, 400, "content"),
    ("/tokenize", {"text": "x"}, 400, "text"),
    ("/tokenize", {"content": "x", "model": "nonesuch"}, 404, "nonesuch"),
    ("/detokenize", {"tokens": [1, "a"]}, 400, "tokens"),
    ("/detokenize", {"tokens": [10**9]}, 400, "token"),
])
def test_bad_input_gets_a_clear_error(server: Server, path, body, status, needle) -> None:
    got, err = server.call("POST", path, body)
    assert got == status, err
    assert needle in assert_openai_error(err)["message"]
