"""Wrong types and bad values for completions and embeddings."""

from __future__ import annotations

from .common import COMPLETIONS, EMBEDDINGS, N_CTX, Case, completion, j


def completion_cases() -> list[Case]:
    bad = [
        ("prompt_missing", j({"max_tokens": 1})),
        ("prompt_null", completion(prompt=None)),
        ("prompt_int", completion(prompt=5)),
        ("prompt_object", completion(prompt={})),
        ("prompt_empty_list", completion(prompt=[])),
        ("prompt_negative_id", completion(prompt=[-1])),
        ("prompt_id_over_int32", completion(prompt=[2**31])),
        ("prompt_id_over_vocab", completion(prompt=[99_999_999])),
        ("prompt_batched_strings", completion(prompt=["a", "b"])),
        ("prompt_batched_ids", completion(prompt=[[1], [2]])),
        ("prompt_mixed", completion(prompt=[1, "a"])),
        ("prompt_empty_inner", completion(prompt=[[]])),
        ("prompt_float_ids", completion(prompt=[1.5])),
        ("prompt_bool_ids", completion(prompt=[True])),
        ("echo_token_ids", completion(prompt=[1, 2], echo=True)),
        ("echo_with_logprobs", completion(echo=True, logprobs=1)),
        ("best_of_2", completion(best_of=2)),
        ("suffix", completion(suffix="x")),
        ("logprobs_6", completion(logprobs=6)),
        ("logprobs_bool", completion(logprobs=True)),
        ("max_tokens_over_limit", completion(max_tokens=65)),
        ("max_tokens_negative", completion(max_tokens=-1)),
        ("stop_too_many", completion(stop=list("abcde"))),
        ("temperature_string", completion(temperature="x")),
        ("n_9", completion(n=9)),
        ("seed_float", completion(seed=1.5)),
        ("longer_than_context", completion(prompt="hello " * 2000)),
        ("ids_longer_than_context", completion(prompt=[42] * (N_CTX + 10))),
        ("model_unknown", completion(model="no-such-model")),
    ]
    statuses = {"longer_than_context": 400, "ids_longer_than_context": 400, "model_unknown": 404}
    return [
        Case(f"completions:{name}", "POST", COMPLETIONS, body, statuses.get(name, 400)) for name, body in bad
    ]


def embedding_cases() -> list[Case]:
    bad = [
        ("input_missing", j({})),
        ("input_null", j({"input": None})),
        ("input_int", j({"input": 5})),
        ("input_object", j({"input": {}})),
        ("input_empty_list", j({"input": []})),
        ("input_empty_string", j({"input": ""})),
        ("input_list_with_empty", j({"input": ["a", ""]})),
        ("input_mixed", j({"input": [1, "a"]})),
        ("input_empty_inner", j({"input": [[]]})),
        ("input_token_ids", j({"input": [1, 2, 3]})),
        ("input_negative_ids", j({"input": [-1]})),
        ("dimensions", j({"input": "a", "dimensions": 8})),
        ("encoding_hex", j({"input": "a", "encoding_format": "hex"})),
        ("model_int", j({"input": "a", "model": 1})),
        ("model_unknown", j({"input": "a", "model": "nope"})),
        ("too_many_inputs", j({"input": ["a"] * 2049})),
        ("longer_than_context", j({"input": "hello " * 2000})),
    ]
    statuses = {"model_unknown": 404}
    return [
        Case(f"embeddings:{name}", "POST", EMBEDDINGS, body, statuses.get(name, 400)) for name, body in bad
    ]
