"""The benchmark workload format and its seeded trace (mullama/bench/workload.py, trace.py)."""

from __future__ import annotations

import itertools
import math
import random
import statistics
from pathlib import Path

import pytest

from mullama.bench import trace, workload
from mullama.bench.workload import WorkloadError
from mullama.core.errors import MullamaError

WORKLOADS = workload.BUILT_IN


def parse(text: str) -> workload.Workload:
    return workload.parse(text, name="t", source="t.toml")


def test_defaults() -> None:
    w = parse("")
    assert w.name == "t" and w.seed == 0 and workload.request_count(w) == 16
    assert w.arrival.mode == "closed" and w.arrival.concurrency == 1
    [ph] = trace.phases(w)
    assert ph.label == "c=1" and len(ph.requests) == 16
    assert all(r.max_tokens == 64 and r.ignore_eos and r.temperature == 0.0 for r in ph.requests)


@pytest.mark.parametrize("path", sorted(WORKLOADS.glob("*.toml")), ids=lambda p: p.name)
def test_example_workloads_parse(path: Path) -> None:
    w = workload.load(path)
    phases = trace.phases(w)
    assert phases and all(ph.requests for ph in phases)


def test_built_in_workloads_resolve_by_name(tmp_path, monkeypatch) -> None:
    assert "priority_mix" in workload.built_in() and len(workload.built_in()) == len(list(WORKLOADS.glob("*.toml")))
    assert workload.resolve("priority_mix") == WORKLOADS / "priority_mix.toml"
    monkeypatch.chdir(tmp_path)
    (tmp_path / "priority_mix").write_text("")  # a file of that name in the working directory wins
    assert workload.resolve("priority_mix") == Path("priority_mix")
    assert workload.resolve("mine.toml") == Path("mine.toml")  # a path stays a path (read errors later)
    with pytest.raises(WorkloadError, match="built in: azure_conv, azure_mixed, baseline"):
        workload.resolve("nonesuch")


def test_examples_cover_every_kind() -> None:
    ws = [workload.load(p) for p in WORKLOADS.glob("*.toml")]
    modes = {w.arrival.mode for w in ws}
    assert modes == {"closed", "poisson", "burst", "trace"}
    assert any(isinstance(w.arrival.concurrency, list) for w in ws)  # a sweep
    assert any(w.models and len(w.models.names) > 1 for w in ws)  # multi-model
    assert any(any(c.priority is not None and c.deadline_ms for c in w.classes) for w in ws)
    assert any(any(c.cancel_after_ms for c in w.classes) for w in ws)
    assert any(w.shared_prefix for w in ws)
    assert any(isinstance(w.prompt.tokens, workload.LogNormal) for w in ws)
    assert any(isinstance(w.output.max_tokens, workload.Choice) for w in ws)


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("seed = 'x'", "seed: Expected `int`, got `str`"),
        ("[arrival]\nrate = -1", "arrival.rate"),
        ("[arrival]\nmode = 'open'", "arrival.mode"),
        ("[arrival]\nconcurrency = 0", "arrival.concurrency"),
        ("[arrival]\nconcurrency = []", "arrival.concurrency"),
        (
            "[prompt]\ntokens = {dist = 'uniform', min = 9, max = 3}",
            "prompt.tokens: min (9) is greater than max (3)",
        ),
        ("[prompt]\ntokens = {dist = 'gamma', k = 2}", "prompt.tokens.dist"),
        (
            "[prompt]\ntokens = {dist = 'uniform', min = 1}",
            "prompt.tokens: Object missing required field `max`",
        ),
        ("[output]\nmax_tokens = -5", "output.max_tokens"),
        ("[output]\ntemperature = 3", "output.temperature"),
        ("bogus = 1", "unknown field `bogus`"),
        ("[models]\nnames = ['a', 'b']\nweights = [1]", "models.weights: 1 weights for 2 models.names"),
        ("[models]\nnames = []", "models.names"),
        ("[[classes]]\nname = 'a'\npriority = 5000", "classes[0].priority"),
        ("[[classes]]\nname = 'a'\n[[classes]]\nname = 'a'", "class names must be unique"),
        ("[[classes]]\nname = 'a'\nweight = 0", "classes: the weights sum to 0"),
        (
            "[output]\nmax_tokens = {dist = 'choice', values = [1, 2], weights = [0, 0]}",
            "the weights sum to 0",
        ),
        ("seed = ", "not valid TOML"),
    ],
)
def test_bad_files_name_the_key(text: str, needle: str) -> None:
    with pytest.raises(WorkloadError) as exc:
        parse(text)
    msg = str(exc.value)
    assert msg.startswith("t.toml: ")
    assert needle in msg, msg
    assert isinstance(exc.value, MullamaError)


def test_unreadable_file(tmp_path: Path) -> None:
    with pytest.raises(WorkloadError, match="cannot read workload file"):
        workload.load(tmp_path / "missing.toml")
    bad = tmp_path / "bin.toml"
    bad.write_bytes(b"\xff\xfe\x00")
    with pytest.raises(WorkloadError, match="not UTF-8"):
        workload.load(bad)


MIX = """
seed = 9
requests = 40
[arrival]
mode = "poisson"
rate = [2.0, 5.0]
[prompt]
tokens = {dist = "lognormal", median = 30, sigma = 0.5}
[output]
max_tokens = {dist = "choice", values = [8, 32]}
[models]
names = ["a", "b", "c"]
pattern = "random"
weights = [1, 1, 2]
[[classes]]
name = "hi"
priority = 10
deadline_ms = 500
user = "u1"
cancel_after_ms = 100
[[classes]]
name = "lo"
weight = 3
"""


def test_seeded_trace_is_reproducible() -> None:
    a, b = trace.phases(parse(MIX)), trace.phases(parse(MIX))
    assert a == b
    c = trace.phases(parse(MIX), seed=10)
    assert [r.messages for r in c[0].requests] != [r.messages for r in a[0].requests]
    # phases of one workload share the requests, only arrivals differ
    assert [r.messages for r in a[0].requests] == [r.messages for r in a[1].requests]
    assert [r.arrival_s for r in a[0].requests] != [r.arrival_s for r in a[1].requests]


def test_streams_are_independent() -> None:
    """Changing the arrival rate leaves prompts, lengths, models and classes as they were."""
    a = trace.phases(parse(MIX))[0].requests
    b = trace.phases(parse(MIX.replace("rate = [2.0, 5.0]", "rate = 7.0")))[0].requests
    assert [(r.messages, r.max_tokens, r.model, r.klass) for r in a] == [
        (r.messages, r.max_tokens, r.model, r.klass) for r in b
    ]


def test_classes_and_models_mix() -> None:
    reqs = trace.phases(parse(MIX.replace("requests = 40", "requests = 2000")))[0].requests
    hi = [r for r in reqs if r.klass == "hi"]
    assert 0.18 < len(hi) / len(reqs) < 0.32  # weight 1 of 4
    assert all(
        r.priority == 10 and r.deadline_ms == 500 and r.user == "u1" and r.cancel_after_ms == 100 for r in hi
    )
    assert all(r.priority is None and r.user is None for r in reqs if r.klass == "lo")
    share_c = sum(r.model == "c" for r in reqs) / len(reqs)
    assert 0.44 < share_c < 0.56
    assert {r.max_tokens for r in reqs} == {8, 32}
    body = hi[0].body()
    assert body["priority"] == 10 and body["deadline_ms"] == 500 and body["user"] == "u1"
    assert body["stream"] is True and body["stream_options"] == {"include_usage": True}
    assert "priority" not in hi[0].body(extensions=False) and "deadline_ms" not in hi[0].body(
        extensions=False
    )


def test_model_patterns() -> None:
    base = "requests = 12\n[models]\nnames = ['a', 'b']\n"
    alt = trace.requests(parse(base))
    assert [r.model for r in alt] == ["a", "b"] * 6
    runs = [r.model for r in trace.requests(parse(base + "pattern = 'runs'\nrun_length = 3\n"))]
    assert runs == ["a"] * 3 + ["b"] * 3 + ["a"] * 3 + ["b"] * 3
    assert [r.model for r in trace.requests(parse(""))] == [""] * 16


@pytest.mark.parametrize(
    ("dist", "check"),
    [
        ("{dist = 'fixed', value = 7}", lambda xs: set(xs) == {7}),
        ("12", lambda xs: set(xs) == {12}),
        ("{dist = 'uniform', min = 5, max = 9}", lambda xs: set(xs) == {5, 6, 7, 8, 9}),
        (
            "{dist = 'normal', mean = 50, std = 10, min = 1, max = 4096}",
            lambda xs: abs(statistics.mean(xs) - 50) < 1.5 and 8 < statistics.stdev(xs) < 12,
        ),
        (
            "{dist = 'normal', mean = 5, std = 50, min = 2, max = 20}",
            lambda xs: min(xs) == 2 and max(xs) == 20,
        ),
        ("{dist = 'lognormal', median = 40, sigma = 0.7}", lambda xs: 36 <= statistics.median(xs) <= 44),
        (
            "{dist = 'choice', values = [1, 100], weights = [3, 1]}",
            lambda xs: 0.7 < xs.count(1) / len(xs) < 0.8,
        ),
    ],
)
def test_length_distributions(dist: str, check) -> None:
    w = parse(f"requests = 1000\n[prompt]\ntokens = {dist}\n[output]\nmax_tokens = {dist}")
    reqs = trace.requests(w)
    prompts = [r.prompt_words for r in reqs]
    assert check(prompts)
    assert all(len(r.messages[-1]["content"].split()) == r.prompt_words for r in reqs)
    assert check([r.max_tokens for r in reqs]) or 0 in prompts  # max_tokens is at least 1


def test_poisson_arrivals_statistics() -> None:
    rate, n = 4.0, 4000
    offs = trace.poisson_offsets(random.Random(1), n, rate)
    assert offs[0] == 0 and offs == sorted(offs)
    gaps = [b - a for a, b in itertools.pairwise(offs)]
    mean = statistics.mean(gaps)
    assert abs(mean - 1 / rate) < 0.05 / rate * 3  # mean 1/rate, within ~3 standard errors
    assert abs(statistics.stdev(gaps) / mean - 1) < 0.1  # exponential: CV 1
    # arrivals in 1-second windows: mean = variance = rate (Poisson counts)
    counts = [0] * math.ceil(offs[-1])
    for t in offs:
        counts[min(int(t), len(counts) - 1)] += 1
    assert abs(statistics.mean(counts) - rate) < 0.3
    assert 0.8 < statistics.variance(counts) / statistics.mean(counts) < 1.25
    # through the workload: the phase at that rate spans about n / rate seconds
    w = parse(f"requests = 400\n[arrival]\nmode = 'poisson'\nrate = {rate}")
    [ph] = trace.phases(w)
    assert ph.mode == "poisson" and ph.concurrency is None and ph.rate == rate
    assert 80 < ph.requests[-1].arrival_s < 120


def test_bursts() -> None:
    w = parse("requests = 10\n[arrival]\nmode = 'burst'\nburst_size = 4\nburst_interval_s = 1.5")
    [ph] = trace.phases(w)
    assert [r.arrival_s for r in ph.requests] == [0.0] * 4 + [1.5] * 4 + [3.0] * 2


def test_closed_sweep() -> None:
    w = parse("[arrival]\nconcurrency = [1, 4, 8]")
    phases = trace.phases(w)
    assert [(p.label, p.concurrency) for p in phases] == [("c=1", 1), ("c=4", 4), ("c=8", 8)]
    assert phases[0].requests == phases[2].requests
    assert all(r.arrival_s == 0 for p in phases for r in p.requests)


def test_shared_prefix_chat_history() -> None:
    w = parse(
        "seed = 1\n[prompt]\ntokens = 5\nsystem = 'Be brief.'\n"
        "[shared_prefix]\ngroups = 3\nprefix_tokens = 20\nturns = 4\nreply_tokens = 6"
    )
    reqs = trace.requests(w)
    assert len(reqs) == 12  # groups × turns by default
    for r in reqs:
        assert r.messages[0]["role"] == "system" and r.messages[0]["content"].startswith("Be brief.\n")
        assert len(r.messages) == 2 + 2 * r.turn
        assert [m["role"] for m in r.messages[1:]] == ["user", "assistant"] * r.turn + ["user"]
    by_group: dict[int, list] = {}
    for r in reqs:
        by_group.setdefault(r.group, []).append(r)
    assert sorted(by_group) == [0, 1, 2]
    prefixes = {g: rs[0].messages[0]["content"] for g, rs in by_group.items()}
    assert len(set(prefixes.values())) == 3
    for rs in by_group.values():
        assert [r.turn for r in rs] == [0, 1, 2, 3]
        for prev, cur in itertools.pairwise(rs):  # each turn extends the previous one's messages
            assert cur.messages[: len(prev.messages)] == prev.messages
            assert len(cur.messages[len(prev.messages)]["content"].split()) == 6  # the synthetic reply
    # interleaved: round-robin over the conversations
    assert [r.group for r in reqs[:6]] == [0, 1, 2, 0, 1, 2]
    # more requests than groups × turns start fresh conversations over the same prefixes
    more = trace.requests(parse("requests = 8\n[shared_prefix]\ngroups = 2\nturns = 2\nprefix_tokens = 4"))
    assert [r.turn for r in more] == [0, 0, 1, 1, 0, 0, 1, 1]
    assert more[4].messages[0] == more[0].messages[0] and len(more[4].messages) == 2
