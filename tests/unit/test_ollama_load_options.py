"""Ollama's load-time options against a model's effective settings (``http/ollama/load_options.py``):
accepted when the model as loaded already satisfies them, else a 400 naming the option and the setting."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from mullama.config import RunnerConfig, load_settings, model_settings
from mullama.core.errors import InvalidArgument
from mullama.http.ollama import load_options
from mullama.http.ollama import request as ollama_request

MODEL = "smollm2:q4_1"


def config(**over: Any) -> RunnerConfig:
    """The defaults (n_ctx 8192 here: 2048 / 2 slots below), with ``over`` on top."""
    base = model_settings(load_settings(env={}), MODEL, "smollm2")
    return dataclasses.replace(base, **{"n_ctx": 2048, "n_parallel": 2, "n_batch": 512, "threads": 0,
                                        "n_gpu_layers": -1, "main_gpu": 0, "numa": "off", "kv_offload": True,
                                        "cache_type_k": "f16", "cache_type_v": "f16", "use_mmap": True,
                                        "use_mlock": False, **over})


def refusal(options: dict[str, Any], cfg: RunnerConfig) -> str:
    with pytest.raises(InvalidArgument) as info:
        load_options.check(MODEL, options, cfg)
    (name,) = options
    assert info.value.param == f"options.{name}"
    return str(info.value)


def test_every_load_option_has_a_rule() -> None:
    typed = {n for n, (_, target, _, _) in ollama_request.OPTIONS.items() if target is None}
    assert load_options.NAMES == typed - set(ollama_request.REMOVED)


@pytest.mark.parametrize("options, over", [
    ({"num_ctx": 2048}, {}), ({"num_ctx": 1024}, {}), ({"num_ctx": 0}, {}),     # 0: Ollama's default
    ({"num_ctx": 2048}, {"n_parallel": 8}),        # one shared KV cache: a request may use all of n_ctx
    ({"num_batch": 512}, {}),
    ({"num_gpu": -1}, {}), ({"num_gpu": -1}, {"n_gpu_layers": 12}), ({"num_gpu": 12}, {"n_gpu_layers": 12}),
    ({"main_gpu": 1}, {"main_gpu": 1}),
    ({"num_thread": 0}, {}), ({"num_thread": 4}, {"threads": 4}),
    ({"numa": False}, {}), ({"numa": True}, {"numa": "distribute"}),
    ({"low_vram": False}, {}), ({"low_vram": True}, {"kv_offload": False}),
    ({"f16_kv": True}, {}), ({"f16_kv": True}, {"cache_type_k": "F16", "cache_type_v": "f16"}),
    ({"f16_kv": False}, {"cache_type_k": "f32", "cache_type_v": "f32"}),
    ({"use_mmap": True}, {}), ({"use_mmap": False}, {"use_mmap": False}),
    ({"use_mlock": False}, {}), ({"use_mlock": True}, {"use_mlock": True}),
    ({"logits_all": False}, {}), ({"vocab_only": False}, {}), ({"embedding_only": False}, {}),
])
def test_what_the_model_already_does_is_accepted(options: dict[str, Any], over: dict[str, Any]) -> None:
    load_options.check(MODEL, options, config(**over))


@pytest.mark.parametrize("options, over, words", [
    ({"num_ctx": 4096}, {}, "serves at most 2048 tokens per request"),
    ({"num_batch": 2048}, {}, "n_batch 512"),
    ({"num_gpu": 0}, {}, "placement planner (n_gpu_layers -1)"),
    ({"num_gpu": 99}, {"n_gpu_layers": 12}, "n_gpu_layers 12"),
    ({"main_gpu": 1}, {}, "main_gpu 0"),
    ({"num_thread": 4}, {}, "default thread count (threads 0)"),
    ({"num_thread": 0}, {"threads": 4}, "uses 4 threads"),
    ({"numa": True}, {}, 'numa "off"'),
    ({"numa": False}, {"numa": "isolate"}, 'numa "isolate"'),
    ({"low_vram": True}, {}, "kv_offload true"),
    ({"low_vram": False}, {"kv_offload": False}, "kv_offload false"),
    ({"f16_kv": True}, {"cache_type_k": "q8_0"}, "q8_0 (K) and f16 (V)"),
    ({"f16_kv": False}, {}, "f16 (K) and f16 (V)"),
    ({"use_mmap": False}, {}, "use_mmap true"),
    ({"use_mlock": True}, {}, "use_mlock false"),
])
def test_anything_else_is_refused_naming_the_setting(options: dict[str, Any], over: dict[str, Any],
                                                     words: str) -> None:
    text = refusal(options, config(**over))
    ((name, value),) = options.items()
    shown = str(value).lower() if isinstance(value, bool) else str(value)
    assert text.startswith(f"options.{name}={shown}: model \"{MODEL}\" ") and words in text, text
    assert f'set [models."{MODEL}"] ' in text and "server config" in text


def test_the_num_ctx_message() -> None:
    text = refusal({"num_ctx": 32768}, config())
    assert text == ('options.num_ctx=32768: model "smollm2:q4_1" serves at most 2048 tokens per request (n_ctx 2048, '
                    'one KV cache its 2 slots share); a request cannot change how a model is loaded: set '
                    '[models."smollm2:q4_1"] n_ctx in the server config.')


@pytest.mark.parametrize("name", ["logits_all", "vocab_only", "embedding_only"])
def test_options_only_false_satisfies(name: str) -> None:
    text = refusal({name: True}, config())
    assert text.startswith(f"options.{name}=true: not supported: ")


def test_the_first_unsatisfied_option_is_named() -> None:
    with pytest.raises(InvalidArgument) as info:
        load_options.check(MODEL, {"num_ctx": 1024, "use_mmap": True, "use_mlock": True}, config())
    assert info.value.param == "options.use_mlock"
