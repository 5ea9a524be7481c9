"""SmolLM2's tokenizer: round trips, special tokens, range checks."""

from __future__ import annotations

import pytest

from mullama.core.errors import InvalidArgument

ROUND_TRIP = [
    "Hello, world!",
    "The capital of France is Paris.",
    "caf\u00e9 na\u00efve r\u00e9sum\u00e9 \u00c5ngstr\u00f6m",
    "\u4f60\u597d\uff0c\u4e16\u754c\u3002\u65e5\u672c\u8a9e\u306e\u30c6\u30ad\u30b9\u30c8",
    "emoji \U0001f600\U0001f680 flags \U0001f1eb\U0001f1f7 ZWJ \U0001f468\u200d\U0001f469\u200d\U0001f467",
    "  leading and trailing spaces  ",
    "tabs\tand\nnewlines\n\n",
    "code: def f(x):\n    return x ** 2  # comment",
    "\u0645\u0631\u062d\u0628\u0627 \u05e9\u05dc\u05d5\u05dd \u0928\u092e\u0938\u094d\u0924\u0947",
    "a",
    "",
]


@pytest.mark.parametrize("text", ROUND_TRIP, ids=range(len(ROUND_TRIP)))
def test_tokenize_detokenize_round_trip(smollm, text):
    tokens = smollm.tokenize(text, False, False)
    assert smollm.detokenize(tokens) == text


def test_empty_string_has_no_tokens(smollm):
    assert smollm.tokenize("", False, False) == []
    assert smollm.detokenize([]) == ""


def test_known_tokenization(smollm):
    # SmolLM2 does not add a BOS; " Paris" is one token.
    assert smollm.tokenize("The capital of France is", True, False) == smollm.tokenize(
        "The capital of France is", False, False
    )
    assert len(smollm.tokenize(" Paris", False, False)) == 1


def test_special_tokens_are_parsed_only_when_asked(smollm):
    assert smollm.tokenize("<|im_start|>", False, True) == [smollm.info.bos]
    plain = smollm.tokenize("<|im_start|>", False, False)
    assert len(plain) > 1 and smollm.info.bos not in plain


def test_special_tokens_detokenize(smollm):
    assert smollm.detokenize([smollm.info.bos], False, True) == "<|im_start|>"
    assert smollm.detokenize([smollm.info.bos], True, False) == ""


def test_token_to_piece_concatenates_to_the_text(smollm):
    text = "Gr\u00fc\u00dfe aus K\u00f6ln \U0001f600"
    tokens = smollm.tokenize(text, False, False)
    raw = b"".join(smollm.token_to_piece(t) for t in tokens)
    assert raw.decode("utf-8") == text


@pytest.mark.parametrize("bad", [[49152], [-1], [0, 10**9], [1, 2, 3, 49152]])
def test_detokenize_out_of_range_raises_invalid_argument(smollm, bad):
    with pytest.raises(InvalidArgument, match="out of range"):
        smollm.detokenize(bad)


def test_token_to_piece_out_of_range_raises_invalid_argument(smollm):
    with pytest.raises(InvalidArgument):
        smollm.token_to_piece(49152)
    with pytest.raises(InvalidArgument):
        smollm.token_to_piece(-1)


def test_long_text_tokenizes(smollm):
    text = "word " * 5000
    tokens = smollm.tokenize(text, False, False)
    assert len(tokens) >= 5000
    assert smollm.detokenize(tokens) == text
