"""Management and internal routes, wrong methods and unknown routes."""

from __future__ import annotations

from .common import CHAT, COMPLETIONS, EMBEDDINGS, LOAD, SCHEDULER, UNLOAD, VARIANT, Case, j


def management_cases() -> list[Case]:
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


def method_cases() -> list[Case]:
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
