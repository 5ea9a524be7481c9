"""Wrong types and bad values for chat completions: fields, JSON schemas and GBNF grammars."""

from __future__ import annotations

from typing import Any

from .common import CHAT, CHAT_HEAD, COMPLETIONS, HI, Case, chat, completion, j, nested, with_raw

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
    ("role_tool_without_call_id", chat(messages=[{"role": "tool", "content": "x"}])),
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
        with_raw(b'{"messages": [{"role": "user", "content": "hi"}], ', b'"max_tokens": 1e308'),
    ),
    (
        "max_tokens_huge_literal",
        with_raw(b'{"messages": [{"role": "user", "content": "hi"}], ', b'"max_tokens": ' + b"9" * 5000),
    ),
    ("max_completion_tokens_over", chat(max_completion_tokens=1000)),
    ("token_caps_disagree", chat(max_tokens=1, max_completion_tokens=2)),
    ("temperature_string", chat(temperature="hot")),
    ("temperature_negative", chat(temperature=-1)),
    ("temperature_3", chat(temperature=3)),
    ("temperature_1e400", with_raw(CHAT_HEAD, b'"temperature": 1e400')),
    ("temperature_nan", with_raw(CHAT_HEAD, b'"temperature": NaN')),
    ("top_p_2", chat(top_p=2)),
    ("top_k_negative", chat(top_k=-1)),
    ("top_k_2_40", chat(top_k=2**40)),
    ("min_p_2", chat(min_p=2)),
    ("repeat_penalty_zero", chat(repeat_penalty=0)),
    ("presence_penalty_5", chat(presence_penalty=5)),
    ("frequency_penalty_minus_5", chat(frequency_penalty=-5)),
    ("seed_2_64", chat(seed=2**64)),
    ("seed_minus_2", chat(seed=-2)),
    ("n_9", chat(n=9)),
    ("n_0", chat(n=0)),
    ("n_string", chat(n="2")),
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
    ("logprobs_int", chat(logprobs=3)),
    ("top_logprobs_string", chat(logprobs=True, top_logprobs="5")),
    ("top_logprobs_21", chat(logprobs=True, top_logprobs=21)),
    ("top_logprobs_negative", chat(logprobs=True, top_logprobs=-1)),
    ("reasoning_format_unknown", chat(reasoning_format="verbose")),
    ("reasoning_effort_unknown", chat(reasoning_effort="extreme")),
    ("enable_thinking_string", chat(chat_template_kwargs={"enable_thinking": "yes"})),
    ("tools_bad_name", chat(tools=[{"type": "function", "function": {"name": "f g"}}])),
    ("tool_choice_unknown_function", chat(tools=[{"type": "function", "function": {"name": "f"}}],
                                          tool_choice={"type": "function", "function": {"name": "g"}})),
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
    (
        "rule_chain_9000",
        "root ::= r0\n" + "".join(f'r{i} ::= r{i + 1} "x"\n' for i in range(9_000)) + 'r9000 ::= "x"\n',
    ),
]


def chat_cases() -> list[Case]:
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
            with_raw(
                CHAT_HEAD, b'"response_format": {"type": "json_object", "schema": ' + nested(3000) + b"}"
            ),
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
