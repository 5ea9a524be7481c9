"""Model names: path escapes and unknown models, in bodies and URLs."""

from __future__ import annotations

from .common import CHAT, COMPLETIONS, EMBEDDINGS, LOAD, UNLOAD, Case, chat, completion, j

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


def name_cases() -> list[Case]:
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
