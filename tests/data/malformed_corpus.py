"""Hostile and malformed requests for ``tests/integration/test_malformed_requests.py``.

Each ``Case`` is one HTTP request (method, path, raw body bytes, extra headers) and what the server
must answer: an exact status, or ``"4xx"``. Nothing here is sent anywhere by importing it. The
server the corpus is written for runs with the ``LIMITS`` below (small, so that "too big" is cheap)
and ``n_ctx`` = ``N_CTX``; ``expect=200`` marks odd-but-valid input (unicode edge cases) that must be
served, with ``max_tokens: 1`` so each costs one token.

``raw=True`` cases are whole HTTP/1.1 requests written to a socket: aiohttp's HTTP parser answers
those before any handler runs, so they get a 4xx but not necessarily the OpenAI error shape.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

LIMITS = {"max_body_bytes": 256 << 10, "max_tokens_limit": 64, "max_messages": 8, "max_stop": 4}
N_CTX = 256

CHAT, COMPLETIONS, EMBEDDINGS = "/v1/chat/completions", "/v1/completions", "/v1/embeddings"
LOAD, UNLOAD, SCHEDULER, VARIANT = (
    "/api/load",
    "/api/unload",
    "/internal/scheduler",
    "/internal/models/smollm2/variant",
)


@dataclass(frozen=True)
class Case:
    name: str
    method: str
    path: str
    body: bytes = b""
    expect: int | str = "4xx"
    headers: dict[str, str] = field(default_factory=dict)
    raw: bool = False

    @property
    def wants_4xx(self) -> bool:
        return self.expect == "4xx" or (isinstance(self.expect, int) and 400 <= self.expect < 500)


def j(obj: Any) -> bytes:
    return json.dumps(obj).encode()


HI = [{"role": "user", "content": "hi"}]


def chat(**fields: Any) -> bytes:
    return j({"messages": HI, "max_tokens": 1, **fields})


def completion(**fields: Any) -> bytes:
    return j({"prompt": "hi", "max_tokens": 1, **fields})


def _with(prefix: bytes, tail: bytes) -> bytes:
    """A chat body whose last field is written raw (for bytes json.dumps cannot produce)."""
    return prefix + tail + b"}"


CHAT_HEAD = b'{"max_tokens": 1, "messages": [{"role": "user", "content": "hi"}], '


def nested(depth: int) -> bytes:
    return b'{"a":' * depth + b"1" + b"}" * depth


# ---------------------------------------------------------------------- bad JSON, on every JSON route

BAD_JSON: list[tuple[str, bytes]] = [
    ("whitespace", b"   \n"),
    ("open_brace", b"{"),
    ("close_brace", b"}"),
    ("garbage", b"{not json"),
    ("array", b"[]"),
    ("null", b"null"),
    ("number", b"42"),
    ("string", b'"text"'),
    ("single_quotes", b"{'model': 'x'}"),
    ("trailing_comma", b'{"model": "x",}'),
    ("missing_colon", b'{"model" "x"}'),
    ("nan_literal", b'{"model": NaN}'),
    ("infinity_literal", b'{"model": Infinity}'),
    ("utf16_bom", b"\xff\xfe{\x00}\x00"),
    ("deep_arrays", b"[" * 100_000 + b"]" * 100_000),
    ("deep_objects", nested(5000)),
    ("truncated", b'{"model": "smollm2", "messages": [{"role": "us'),
    ("two_documents", b"{}{}"),
    ("lone_surrogate_key", b'{"\\ud800": 1}'),
    ("invalid_utf8_key", b'{"\xff": 1}'),
]
JSON_ROUTES = [CHAT, COMPLETIONS, EMBEDDINGS, LOAD, UNLOAD, SCHEDULER, VARIANT]


def _bad_json() -> list[Case]:
    # msgspec skips unknown keys without checking their UTF-8: to load/unload, whose fields are all
    # optional, {"\xff": 1} is "{}" (the default model), a valid request
    cases = [
        Case(f"bad_json:{route}:{name}", "POST", route, body)
        for route in JSON_ROUTES
        for name, body in BAD_JSON
        if not (name == "invalid_utf8_key" and route in (LOAD, UNLOAD))
    ]
    # an empty body is "{}" for load/unload (the default model); everywhere else it is a 400
    cases += [
        Case(f"bad_json:{route}:empty", "POST", route, b"", 400)
        for route in (CHAT, COMPLETIONS, EMBEDDINGS, SCHEDULER, VARIANT)
    ]
    return cases


# ---------------------------------------------------------------------- wrong types, bad values: chat

CHAT_BAD: list[tuple[str, bytes]] = [
    ("model_int", chat(model=5)),
    ("model_list", chat(model=[])),
    ("model_object", chat(model={})),
    ("messages_missing", j({"max_tokens": 1})),
    ("messages_null", chat(messages=None)),
    ("messages_string", chat(messages="hi")),
    ("messages_object", chat(messages={})),
    ("messages_empty", chat(messages=[])),
    ("messages_of_ints", chat(messages=[1, 2])),
    ("message_no_role", chat(messages=[{"content": "x"}])),
    ("role_int", chat(messages=[{"role": 1, "content": "x"}])),
    ("role_unknown", chat(messages=[{"role": "robot", "content": "x"}])),
    ("role_tool", chat(messages=[{"role": "tool", "content": "x", "tool_call_id": "1"}])),
    ("content_int", chat(messages=[{"role": "user", "content": 5}])),
    ("content_null_user", chat(messages=[{"role": "user", "content": None}])),
    ("content_empty_list", chat(messages=[{"role": "user", "content": []}])),
    (
        "content_part_image",
        chat(
            messages=[
                {
                    "role": "user",
                    "content": [{"type": "image_url", "image_url": {"url": "file:///etc/passwd"}}],
                }
            ]
        ),
    ),
    ("content_part_no_text", chat(messages=[{"role": "user", "content": [{"type": "text"}]}])),
    ("content_part_no_type", chat(messages=[{"role": "user", "content": [{"text": "x"}]}])),
    (
        "message_tool_calls",
        chat(messages=[{"role": "assistant", "content": "x", "tool_calls": [{"id": "1"}]}]),
    ),
    ("too_many_messages", chat(messages=HI * 9)),
    ("max_tokens_string", chat(max_tokens="5")),
    ("max_tokens_float", chat(max_tokens=5.5)),
    ("max_tokens_bool", chat(max_tokens=True)),
    ("max_tokens_zero", chat(max_tokens=0)),
    ("max_tokens_negative", chat(max_tokens=-1)),
    ("max_tokens_over_limit", chat(max_tokens=65)),
    ("max_tokens_2_64", chat(max_tokens=2**64)),
    ("max_tokens_minus_2_63", chat(max_tokens=-(2**63))),
    (
        "max_tokens_1e308",
        _with(b'{"messages": [{"role": "user", "content": "hi"}], ', b'"max_tokens": 1e308'),
    ),
    (
        "max_tokens_huge_literal",
        _with(b'{"messages": [{"role": "user", "content": "hi"}], ', b'"max_tokens": ' + b"9" * 5000),
    ),
    ("max_completion_tokens_over", chat(max_completion_tokens=1000)),
    ("token_caps_disagree", chat(max_tokens=1, max_completion_tokens=2)),
    ("temperature_string", chat(temperature="hot")),
    ("temperature_negative", chat(temperature=-1)),
    ("temperature_3", chat(temperature=3)),
    ("temperature_1e400", _with(CHAT_HEAD, b'"temperature": 1e400')),
    ("temperature_nan", _with(CHAT_HEAD, b'"temperature": NaN')),
    ("top_p_2", chat(top_p=2)),
    ("top_k_negative", chat(top_k=-1)),
    ("top_k_2_40", chat(top_k=2**40)),
    ("min_p_2", chat(min_p=2)),
    ("repeat_penalty_zero", chat(repeat_penalty=0)),
    ("presence_penalty_5", chat(presence_penalty=5)),
    ("frequency_penalty_minus_5", chat(frequency_penalty=-5)),
    ("seed_2_64", chat(seed=2**64)),
    ("seed_minus_2", chat(seed=-2)),
    ("n_2", chat(n=2)),
    ("n_0", chat(n=0)),
    ("stream_string", chat(stream="yes")),
    ("stream_options_without_stream", chat(stream_options={})),
    ("stop_int", chat(stop=5)),
    ("stop_list_of_ints", chat(stop=[1])),
    ("stop_empty_string", chat(stop=[""])),
    ("stop_too_long", chat(stop=["x" * 300])),
    ("stop_too_many", chat(stop=["a", "b", "c", "d", "e"])),
    ("logit_bias_word_key", chat(logit_bias={"abc": 1})),
    ("logit_bias_1000", chat(logit_bias={"1": 1000})),
    ("logit_bias_negative_id", chat(logit_bias={"-1": 1})),
    ("logit_bias_id_over_int32", chat(logit_bias={"99999999999": 1})),
    ("logit_bias_id_over_vocab", chat(logit_bias={"99999999": 1})),
    ("logit_bias_value_string", chat(logit_bias={"1": "x"})),
    ("logprobs", chat(logprobs=True)),
    ("top_logprobs", chat(top_logprobs=5)),
    ("tools", chat(tools=[{"type": "function", "function": {"name": "f"}}])),
    ("tool_choice", chat(tool_choice="required")),
    ("functions", chat(functions=[{"name": "f"}])),
    ("audio", chat(audio={"voice": "x"})),
    ("modalities_audio", chat(modalities=["audio"])),
    ("priority_5000", chat(priority=5000)),
    ("priority_string", chat(priority="high")),
    ("deadline_zero", chat(deadline_ms=0)),
    ("deadline_negative", chat(deadline_ms=-1)),
    ("keep_alive_word", chat(keep_alive="abc")),
    ("keep_alive_list", chat(keep_alive=[1])),
    ("keep_alive_bool", chat(keep_alive=True)),
    ("keep_alive_nan_string", chat(keep_alive="NaN")),
    ("keep_alive_inf_string", chat(keep_alive="1e400")),
    ("user_int", chat(user=5)),
    ("ignore_eos_string", chat(ignore_eos="yes")),
]

SCHEMAS_BAD: list[tuple[str, Any]] = [
    ("type_nonsense", {"type": "nonsense"}),
    ("ref_missing", {"$ref": "#/definitions/nope"}),
    ("ref_self_root", {"$ref": "#"}),
    ("ref_remote", {"$ref": "https://example.com/s.json"}),
    ("ref_file", {"$ref": "file:///etc/passwd"}),
    ("min_items_huge", {"type": "array", "minItems": 10**8}),
    ("min_length_huge", {"type": "string", "minLength": 10**9}),
    ("integer_range_1e308", {"type": "integer", "minimum": -1e308, "maximum": 1e308}),
]
GRAMMARS_BAD: list[tuple[str, str]] = [
    ("unbalanced", "root ::= ("),
    ("no_root", 'foo ::= "a"'),
    ("undefined_rule", "root ::= bar"),
    ("left_recursion", 'root ::= root "a" | "a"'),
    ("repetition_huge", 'root ::= "a"{1000000}'),
    ("repetition_overflow", 'root ::= "a"{0,99999999999999999999}'),
    ("unterminated_literal", 'root ::= "abc'),
    ("bad_char_class", "root ::= [a-"),
    ("nested_100k", "root ::= " + "(" * 100_000 + '"a"' + ")" * 100_000),
    ("nested_300", "root ::= " + "(" * 300 + '"a"' + ")" * 300),
    # a chain of rules recurses like nesting (120 000 of them crashed the runner): over the rule cap,
    # small enough for this suite's body limit
    ("rule_chain_9000", "root ::= r0\n" + "".join(f'r{i} ::= r{i + 1} "x"\n' for i in range(9_000))
     + 'r9000 ::= "x"\n'),
]


def _chat_cases() -> list[Case]:
    cases = [Case(f"chat:{name}", "POST", CHAT, body) for name, body in CHAT_BAD]
    for name, schema in SCHEMAS_BAD:
        cases.append(
            Case(
                f"chat:json_schema:{name}",
                "POST",
                CHAT,
                chat(response_format={"type": "json_schema", "json_schema": {"name": "x", "schema": schema}}),
                400,
            )
        )
        cases.append(
            Case(
                f"chat:json_object:{name}",
                "POST",
                CHAT,
                chat(response_format={"type": "json_object", "schema": schema}),
                400,
            )
        )
    cases += [
        Case("chat:response_format_xml", "POST", CHAT, chat(response_format={"type": "xml"}), 400),
        Case("chat:response_format_string", "POST", CHAT, chat(response_format="json"), 400),
        Case("chat:json_schema_missing", "POST", CHAT, chat(response_format={"type": "json_schema"}), 400),
        Case(
            "chat:json_schema_no_schema",
            "POST",
            CHAT,
            chat(response_format={"type": "json_schema", "json_schema": {"name": "x"}}),
            400,
        ),
        Case(
            "chat:json_schema_schema_string",
            "POST",
            CHAT,
            chat(response_format={"type": "json_schema", "json_schema": {"schema": "{}"}}),
            400,
        ),
        Case(
            "chat:json_schema_deep",
            "POST",
            CHAT,
            _with(CHAT_HEAD, b'"response_format": {"type": "json_object", "schema": ' + nested(3000) + b"}"),
            400,
        ),
        Case(
            "chat:grammar_and_json",
            "POST",
            CHAT,
            chat(grammar='root ::= "a"', response_format={"type": "json_object"}),
            400,
        ),
        Case("chat:grammar_int", "POST", CHAT, chat(grammar=5), 400),
    ]
    cases += [Case(f"chat:grammar:{name}", "POST", CHAT, chat(grammar=g), 400) for name, g in GRAMMARS_BAD]
    cases += [
        Case(f"completions:grammar:{name}", "POST", COMPLETIONS, completion(grammar=g), 400)
        for name, g in GRAMMARS_BAD[-3:]
    ]
    return cases


# ---------------------------------------------------------------------- completions and embeddings


def _completion_cases() -> list[Case]:
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
        ("echo", completion(echo=True)),
        ("best_of_2", completion(best_of=2)),
        ("suffix", completion(suffix="x")),
        ("logprobs", completion(logprobs=2)),
        ("max_tokens_over_limit", completion(max_tokens=65)),
        ("max_tokens_negative", completion(max_tokens=-1)),
        ("stop_too_many", completion(stop=list("abcde"))),
        ("temperature_string", completion(temperature="x")),
        ("n_3", completion(n=3)),
        ("seed_float", completion(seed=1.5)),
        ("longer_than_context", completion(prompt="hello " * 2000)),
        ("ids_longer_than_context", completion(prompt=[42] * (N_CTX + 10))),
        ("model_unknown", completion(model="no-such-model")),
    ]
    statuses = {"longer_than_context": 400, "ids_longer_than_context": 400, "model_unknown": 404}
    return [
        Case(f"completions:{name}", "POST", COMPLETIONS, body, statuses.get(name, 400)) for name, body in bad
    ]


def _embedding_cases() -> list[Case]:
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


# ---------------------------------------------------------------------- model names and path escapes

ESCAPES = [
    "../etc/passwd",
    "/etc/passwd",
    "..",
    "../../../../root/.ssh/id_rsa",
    "smollm2/../../x.gguf",
    "smollm2:../../x",
    "C:\\models\\x.gguf",
    "..\\..\\x",
    "bad\x00name",
    "name\nwith newline",
    "./smollm2",
    "~/.ssh/id_rsa",
]
UNKNOWN = [
    ("no-such-model", 404),
    ("smollm2:q9_9", 404),
    ("x" * 5000, 400),
    ("\u202egnp.exe", 404),
    ("\U0001f600", 404),
    ("llama3:70b", 404),
    ("SMOLLM2:NOPE", 404),
    ("smollm2::q4_1", 404),
]


def _name_cases() -> list[Case]:
    cases = []
    for i, name in enumerate(ESCAPES):
        cases.append(Case(f"escape:chat:{i}", "POST", CHAT, chat(model=name), 400))
        cases.append(Case(f"escape:completions:{i}", "POST", COMPLETIONS, completion(model=name), 400))
        cases.append(
            Case(f"escape:embeddings:{i}", "POST", EMBEDDINGS, j({"input": "a", "model": name}), 400)
        )
        cases.append(Case(f"escape:load:{i}", "POST", LOAD, j({"model": name}), 400))
        cases.append(Case(f"escape:unload:{i}", "POST", UNLOAD, j({"model": name}), 400))
    for i, (name, status) in enumerate(UNKNOWN):
        cases.append(Case(f"unknown:chat:{i}", "POST", CHAT, chat(model=name), status))
        cases.append(Case(f"unknown:load:{i}", "POST", LOAD, j({"model": name}), status))
        cases.append(Case(f"unknown:unload:{i}", "POST", UNLOAD, j({"model": name}), status))
    quoted = [
        "..%2Fetc%2Fpasswd",
        "%2e%2e%2f%2e%2e%2fetc%2fpasswd",
        "%2Fetc%2Fpasswd",
        "a%00b",
        "..%5C..%5Cx",
    ]
    for i, q in enumerate(quoted):
        for route in ("/v1/models/", "/api/models/", "/internal/kv/"):
            cases.append(Case(f"escape:url:{route}{i}", "GET", route + q, expect=400))
    cases += [
        Case("unknown:url:/v1/models", "GET", "/v1/models/no-such-model", expect=404),
        Case("unknown:url:/api/models", "GET", "/api/models/no-such-model", expect=404),
        Case("unknown:url:/internal/kv", "GET", "/internal/kv/no-such-model", expect=404),
        Case("escape:url:/v1/models/dotdot", "GET", "/v1/models/../../etc/passwd", expect="4xx"),
    ]
    return cases


# ---------------------------------------------------------------------- management and internal routes


def _management_cases() -> list[Case]:
    return [
        Case("load:keep_alive_word", "POST", LOAD, j({"model": "smollm2", "keep_alive": "abc"}), 400),
        Case("load:keep_alive_list", "POST", LOAD, j({"model": "smollm2", "keep_alive": [1]}), 400),
        Case("load:keep_alive_nan", "POST", LOAD, j({"model": "smollm2", "keep_alive": "NaN"}), 400),
        Case("load:keep_alive_object", "POST", LOAD, j({"model": "smollm2", "keep_alive": {}}), 400),
        Case("load:model_int", "POST", LOAD, j({"model": 5}), 400),
        Case("unload:model_list", "POST", UNLOAD, j({"model": ["smollm2"]}), 400),
        Case("scheduler:policy_int", "POST", SCHEDULER, j({"policy": 5}), 400),
        Case("scheduler:policy_unknown", "POST", SCHEDULER, j({"policy": "nope"}), 400),
        Case("scheduler:policy_import_path", "POST", SCHEDULER, j({"policy": "os:system"}), 400),
        Case("scheduler:policy_empty", "POST", SCHEDULER, j({"policy": ""}), 400),
        Case("scheduler:policy_nul", "POST", SCHEDULER, j({"policy": "\x00"}), 400),
        Case("scheduler:unknown_field", "POST", SCHEDULER, j({"policy": "fifo", "x": 1}), 400),
        Case("scheduler:missing_policy", "POST", SCHEDULER, j({}), 400),
        Case("variant:empty", "POST", VARIANT, j({"variant": ""}), 400),
        Case("variant:int", "POST", VARIANT, j({"variant": 5}), 400),
        Case("variant:unknown", "POST", VARIANT, j({"variant": "q9_9"}), "4xx"),
        Case("variant:escape", "POST", VARIANT, j({"variant": "../../x"}), 400),
        Case("variant:unknown_field", "POST", VARIANT, j({"variant": "q4_1", "x": 1}), 400),
        Case(
            "variant:unknown_family",
            "POST",
            "/internal/models/no-such-family/variant",
            j({"variant": "q4_1"}),
            "4xx",
        ),
        Case("variant:family_escape", "POST", "/internal/models/%2e%2e/variant", j({"variant": "q4_1"}), 400),
        Case("events:backlog_negative", "GET", "/internal/events?backlog=-1&follow=0", expect=400),
        Case("events:backlog_word", "GET", "/internal/events?backlog=abc&follow=0", expect=400),
        Case(
            "events:backlog_huge", "GET", "/internal/events?backlog=99999999999999999999&follow=0", expect=400
        ),
        Case("events:backlog_float", "GET", "/internal/events?backlog=1.5&follow=0", expect=400),
    ]


def _method_cases() -> list[Case]:
    wrong = [
        ("GET", CHAT),
        ("GET", COMPLETIONS),
        ("GET", EMBEDDINGS),
        ("GET", LOAD),
        ("GET", UNLOAD),
        ("PUT", CHAT),
        ("DELETE", "/v1/models"),
        ("DELETE", "/api/ps"),
        ("PATCH", SCHEDULER),
        ("POST", "/health"),
        ("POST", "/metrics"),
        ("POST", "/openapi.json"),
        ("GET", VARIANT),
    ]
    cases = [Case(f"method:{m}:{p}", m, p, expect=405) for m, p in wrong]
    cases += [
        Case(f"route:{p}", "GET", p, expect=404)
        for p in ("/no/such/route", "/v1", "/v2/chat/completions", "/internal", "/api/../etc/passwd")
    ]
    cases.append(Case("route:post_unknown", "POST", "/v1/nope", j({}), 404))
    return cases


# ---------------------------------------------------------------------- unicode


def _unicode_cases() -> list[Case]:
    def raw_content(content: bytes) -> bytes:
        return b'{"max_tokens": 1, "messages": [{"role": "user", "content": "' + content + b'"}]}'

    bad = [
        ("lone_high_surrogate", b"\\ud800"),
        ("lone_low_surrogate", b"\\udc00"),
        ("reversed_pair", b"\\udc00\\ud800"),
        ("high_then_letter", b"\\ud800\\u0041"),
        ("invalid_byte_ff", b"\xff"),
        ("overlong_slash", b"\xc0\xaf"),
        ("overlong_nul", b"\xc0\x80"),
        ("cesu_surrogate", b"\xed\xa0\x80"),
        ("truncated_sequence", b"\xe2\x82"),
        ("latin1_byte", b"caf\xe9"),
        ("raw_control_char", b"a\x01b"),
        ("bad_escape", b"\\x41"),
        ("short_unicode_escape", b"\\u12"),
    ]
    cases = [Case(f"unicode:chat:{name}", "POST", CHAT, raw_content(c), 400) for name, c in bad]
    cases += [
        Case(
            f"unicode:completions:{name}",
            "POST",
            COMPLETIONS,
            b'{"max_tokens": 1, "prompt": "' + c + b'"}',
            400,
        )
        for name, c in bad[:6]
    ]
    cases += [
        Case(f"unicode:model:{name}", "POST", CHAT, b'{"messages": [], "model": "' + c + b'"}', 400)
        for name, c in bad[4:8]
    ]
    ok = [
        ("nul_escape", "a\u0000b"),
        ("rtl_override", "\u202eevil\u202c"),
        ("emoji", "\U0001f600\U0001f44d\U0001f3fd"),
        ("zwj_family", "\U0001f468\u200d\U0001f469\u200d\U0001f467"),
        ("bom_char", "\ufeffhi"),
        ("noncharacter", "\uffff\ufffe"),
        ("combining", "e\u0301\u0301\u0301\u0301"),
        ("valid_pair_escape", "\U0001d11e"),
        ("cjk", "\u4f60\u597d"),
        ("arabic", "\u0645\u0631\u062d\u0628\u0627"),
    ]
    cases += [
        Case(
            f"unicode:ok:{name}",
            "POST",
            CHAT,
            j({"max_tokens": 1, "messages": [{"role": "user", "content": text}]}),
            200,
        )
        for name, text in ok
    ]
    cases.append(Case("unicode:ok:stop_emoji", "POST", CHAT, chat(stop=["\U0001f600"]), 200))
    cases.append(Case("unicode:ok:ascii_escaped_pair", "POST", CHAT, raw_content(b"\\ud834\\udd1e"), 200))
    return cases


# ---------------------------------------------------------------------- size


def _size_cases() -> list[Case]:
    big = LIMITS["max_body_bytes"] + 1
    padding = "x" * big
    cases = [
        Case(f"size:{name}", "POST", route, body, 413)
        for name, route, body in [
            ("chat", CHAT, chat(messages=[{"role": "user", "content": padding}])),
            ("completions", COMPLETIONS, completion(prompt=padding)),
            ("embeddings", EMBEDDINGS, j({"input": padding})),
            ("load", LOAD, j({"model": padding})),
            ("scheduler", SCHEDULER, j({"policy": padding})),
            ("variant", VARIANT, j({"variant": padding})),
            ("spaces", CHAT, b" " * big),
            ("nuls", CHAT, b"\x00" * big),
        ]
    ]
    cases.append(
        Case(
            "size:chunked",
            "POST",
            CHAT,
            chat(messages=[{"role": "user", "content": padding}]),
            413,
            headers={"Transfer-Encoding": "chunked"},
        )
    )
    cases.append(
        Case(
            "size:chat_longer_than_context",
            "POST",
            CHAT,
            chat(messages=[{"role": "user", "content": "hello " * 2000}]),
            400,
        )
    )
    cases.append(
        Case(
            "size:many_small_messages_over_context",
            "POST",
            CHAT,
            chat(messages=[{"role": "user", "content": "hello " * 60}] * 8),
            400,
        )
    )
    return cases


# ---------------------------------------------------------------------- raw HTTP


def _raw_cases() -> list[Case]:
    def req(head: str, body: bytes = b"") -> bytes:
        return head.encode() + b"\r\n\r\n" + body

    return [
        Case(
            "raw:content_length_lies",
            "POST",
            CHAT,
            req(f"POST {CHAT} HTTP/1.1\r\nHost: x\r\nContent-Length: -5"),
            raw=True,
        ),
        Case(
            "raw:content_length_word",
            "POST",
            CHAT,
            req(f"POST {CHAT} HTTP/1.1\r\nHost: x\r\nContent-Length: abc"),
            raw=True,
        ),
        Case(
            "raw:bad_chunk_size",
            "POST",
            CHAT,
            req(f"POST {CHAT} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked", b"zz\r\nabc\r\n0\r\n\r\n"),
            raw=True,
        ),
        Case(
            "raw:header_too_long",
            "GET",
            "/health",
            req("GET /health HTTP/1.1\r\nHost: x\r\nX-A: " + "a" * 20000),
            raw=True,
        ),
        Case("raw:bad_request_line", "GET", "/health", req("GARBAGE"), raw=True),
        Case(
            "raw:non_ascii_target",
            "GET",
            "/health",
            b"GET /api/models?refresh=\xff HTTP/1.1\r\nHost: x\r\n\r\n",
            "4xx",
            raw=True,
        ),
    ]


def cases() -> list[Case]:
    out = (
        _bad_json()
        + _chat_cases()
        + _completion_cases()
        + _embedding_cases()
        + _name_cases()
        + _management_cases()
        + _method_cases()
        + _unicode_cases()
        + _size_cases()
        + _raw_cases()
    )
    names = [c.name for c in out]
    assert len(names) == len(set(names)), [n for n in names if names.count(n) > 1]
    return out
