"""Prefetch predictors (mullama/prefetch.py): the Markov chain over model switches, make_predictor."""

from __future__ import annotations

import json
import re
import sys
import types
from pathlib import Path

import pytest

from mullama.core.errors import ConfigError
from mullama.serving.prefetch import PREDICTORS, MarkovPredictor, Predictor, make_predictor

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
from prefetch_trace import make_trace  # noqa: E402


def fed(models: str | list[str], **kw) -> MarkovPredictor:
    """A predictor that observed ``models`` (a string is one model per character)."""
    p = MarkovPredictor(**kw)
    for m in models:
        p.observe(m)
    return p


# ---------------------------------------------------------------------- collapsing runs and probabilities


@pytest.mark.parametrize("trace, switches", [
    ("", {}),
    ("A", {}),
    ("AAAA", {}),
    ("AB", {"A": {"B": 1.0}}),
    ("AAABBB", {"A": {"B": 1.0}}),
    ("AABBAABB", {"A": {"B": 2.0}, "B": {"A": 1.0}}),
    ("ABABAB", {"A": {"B": 3.0}, "B": {"A": 2.0}}),
    ("ABACA", {"A": {"B": 1.0, "C": 1.0}, "B": {"A": 1.0}, "C": {"A": 1.0}}),
])
def test_runs_are_collapsed_into_switches(trace: str, switches: dict) -> None:
    snap = fed(trace).snapshot()
    assert snap["transitions"] == switches
    assert snap["requests"] == len(trace)
    assert snap["switches"] == {src: int(sum(row.values())) for src, row in switches.items()}


@pytest.mark.parametrize("trace, current, expected", [
    ("ABAB", "A", ("B", 1.0)),             # two switches out of A, both to B
    ("AABBBAAB", "A", ("B", 1.0)),         # runs collapse: still A->B twice
    ("ABACABAC", "A", ("B", 0.5)),         # a tie (A->B 2, A->C 2) goes to the alphabetically first
    ("ABACAB", "A", ("B", 2 / 3)),         # A->B, A->C, A->B
    ("ACABABAB", "A", ("B", 3 / 4)),       # A->C, A->B x3
    ("ABAB", "B", None),                   # only one switch out of B
    ("ABABA", "B", ("A", 1.0)),
    ("ABAB", "Z", None),                   # never seen
    ("AAAA", "A", None),                   # no switches at all
])
def test_probabilities(trace: str, current: str, expected: tuple[str, float] | None) -> None:
    got = fed(trace).predict(current)
    if expected is None:
        assert got is None
    else:
        assert got is not None and got[0] == expected[0] and got[1] == pytest.approx(expected[1])


def test_prediction_is_never_the_current_model() -> None:
    p = fed("ABABABAB")
    for model in "AB":
        guess = p.predict(model)
        assert guess is not None and guess[0] != model


def test_observe_after_predict_does_not_change_it() -> None:
    p = fed("ABAB")
    assert p.predict("A") == p.predict("A") == ("B", 1.0)
    assert p.snapshot() == p.snapshot()


# ---------------------------------------------------------------------- min_observations


@pytest.mark.parametrize("min_observations, trace, expected", [
    (1, "AB", ("B", 1.0)),
    (2, "AB", None),
    (2, "ABAB", ("B", 1.0)),
    (2, "AAAABBBB", None),        # a long run is still one switch
    (3, "ABAB", None),
    (3, "ABABAB", ("B", 1.0)),
    (5, "ABABABABA", None),       # 4 switches out of A
])
def test_min_observations(min_observations: int, trace: str, expected: tuple[str, float] | None) -> None:
    assert fed(trace, min_observations=min_observations).predict("A") == expected


# ---------------------------------------------------------------------- ties


@pytest.mark.parametrize("trace, expected", [
    ("ABAC", "B"),
    ("ACAB", "B"),                # order of arrival does not matter
    ("AZAYAX", "X"),              # three-way tie
    (["m", "zeta", "m", "alpha"], "alpha"),
])
def test_ties_go_to_the_alphabetically_first(trace: str | list[str], expected: str) -> None:
    current = trace[0]
    got = fed(trace).predict(current)
    assert got is not None and got[0] == expected


# ---------------------------------------------------------------------- decay


def test_decay_weights_each_switch_by_its_age() -> None:
    p = fed("ABACAC", decay=0.5)  # out of A: B (age 2), C (age 1), C (age 0)
    snap = p.snapshot()
    assert snap["transitions"]["A"] == {"B": 0.25, "C": 1.5}
    assert snap["switches"]["A"] == 3   # min_observations counts raw switches
    guess = p.predict("A")
    assert guess is not None and guess[0] == "C" and guess[1] == pytest.approx(1.5 / 1.75)


@pytest.mark.parametrize("decay, expected", [
    (1.0, "B"),    # no decay: 4 old A->B beat 3 new A->C
    (0.5, "C"),    # decay: the new traffic wins
])
def test_decay_follows_changing_traffic(decay: float, expected: str) -> None:
    p = fed("ABABABAB" + "ACACAC", decay=decay)
    guess = p.predict("A")
    assert guess is not None and guess[0] == expected


def test_decay_is_per_source_model() -> None:
    # many switches out of B/C do not age A's evidence
    p = fed("AB" + "CB" * 10 + "AB", decay=0.5)
    assert p.snapshot()["transitions"]["A"] == {"B": 1.5}


@pytest.mark.parametrize("kwargs, needle", [
    ({"min_observations": 0}, "min_observations"),
    ({"min_observations": -1}, "min_observations"),
    ({"min_observations": 1.5}, "min_observations"),
    ({"min_observations": True}, "min_observations"),
    ({"min_observations": "2"}, "min_observations"),
    ({"decay": 0.0}, "decay"),
    ({"decay": -0.5}, "decay"),
    ({"decay": 1.5}, "decay"),
    ({"decay": float("nan")}, "decay"),
    ({"decay": float("inf")}, "decay"),
    ({"decay": "0.5"}, "decay"),
    ({"decay": False}, "decay"),
])
def test_bad_parameters_are_config_errors(kwargs: dict, needle: str) -> None:
    with pytest.raises(ConfigError, match=needle):
        MarkovPredictor(**kwargs)


# ---------------------------------------------------------------------- snapshot


def test_snapshot_shape() -> None:
    snap = fed("AABBAAC").snapshot()
    assert json.loads(json.dumps(snap)) == snap
    assert snap == {
        "name": "markov", "min_observations": 2, "decay": 1.0, "last": "C", "requests": 7,
        "switches": {"A": 2, "B": 1},
        "transitions": {"A": {"B": 1.0, "C": 1.0}, "B": {"A": 1.0}},
        "predictions": {"A": {"model": "B", "confidence": 0.5}, "B": None, "C": None},
    }


def test_snapshot_of_a_new_predictor() -> None:
    snap = MarkovPredictor().snapshot()
    assert snap["name"] == "markov" and snap["last"] is None and snap["requests"] == 0
    assert snap["transitions"] == snap["switches"] == snap["predictions"] == {}


def test_snapshot_rounds_decayed_weights() -> None:
    snap = fed("ABACAB", decay=1 / 3).snapshot()
    assert snap["transitions"]["A"] == {"B": round(1 / 9 + 1, 6), "C": round(1 / 3, 6)}
    assert snap["predictions"]["A"]["confidence"] == round((1 / 9 + 1) / (1 / 9 + 1 + 1 / 3), 6)


def test_predictors_are_independent() -> None:
    a, b = fed("ABAB"), MarkovPredictor()
    assert b.predict("A") is None and b.snapshot()["requests"] == 0
    assert a.predict("A") == ("B", 1.0)


# ---------------------------------------------------------------------- the benchmark's trace


@pytest.mark.parametrize("seed", [7, 1, 42])
def test_trace_alternates_runs_and_is_seeded(seed: int) -> None:
    trace = make_trace(seed, runs=12)
    assert trace == make_trace(seed, runs=12)
    assert [r.index for r in trace] == list(range(len(trace)))
    runs: dict[int, list] = {}
    for r in trace:
        runs.setdefault(r.run, []).append(r)
    assert sorted(runs) == list(range(12))
    for n, reqs in runs.items():
        assert {r.model for r in reqs} == {"AB"[n % 2]}
        assert 2 <= len(reqs) <= 5
        assert [r.first_in_run for r in reqs] == [True] + [False] * (len(reqs) - 1)
        assert all(0.05 <= r.gap_after <= 0.2 for r in reqs[:-1])
        assert n == 11 or 1.5 <= reqs[-1].gap_after <= 3.0
    assert trace[-1].gap_after == 0.0


def test_trace_seeds_differ() -> None:
    assert make_trace(7) != make_trace(8)


@pytest.mark.parametrize("kwargs", [{"runs": 0}, {"run_length": (0, 3)}, {"run_length": (4, 2)}])
def test_trace_bad_shape(kwargs: dict) -> None:
    with pytest.raises(ValueError):
        make_trace(**kwargs)


@pytest.mark.parametrize("seed", [7, 3, 99])
def test_alternating_trace_is_learned_after_warm_up(seed: int) -> None:
    """Fed the trace request by request, the predictor names the other model with confidence 1.0 once it
    has seen two switches out of the current one (strict alternation: from the end of the fifth run on)."""
    p = MarkovPredictor()
    trace = make_trace(seed, runs=12)
    for i, req in enumerate(trace):
        p.observe(req.model)
        end_of_run = i == len(trace) - 1 or trace[i + 1].run != req.run
        if not end_of_run:
            continue
        guess = p.predict(req.model)
        if req.run < 4:  # ends of runs 0..3: fewer than two switches out of the current model
            assert guess is None, (req.run, guess)
        else:
            assert guess == ("B" if req.model == "A" else "A", 1.0), (req.run, guess)


# ---------------------------------------------------------------------- make_predictor


class GoodPredictor:
    name = "good"

    def observe(self, model: str) -> None: ...
    def predict(self, current: str) -> tuple[str, float] | None: return None
    def snapshot(self) -> dict: return {"name": self.name}


class NoName:
    def observe(self, model: str) -> None: ...
    def predict(self, current: str) -> None: return None
    def snapshot(self) -> dict: return {}


class NoPredict:
    name = "half"

    def observe(self, model: str) -> None: ...
    def snapshot(self) -> dict: return {}


class NeedsArgs:
    def __init__(self, x: int) -> None: ...


class Exploding:
    def __init__(self) -> None:
        raise RuntimeError("boom")


@pytest.fixture
def custom_module(monkeypatch: pytest.MonkeyPatch) -> str:
    mod = types.ModuleType("prefetch_custom_fixture")
    for cls in (GoodPredictor, NoName, NoPredict, NeedsArgs, Exploding):
        setattr(mod, cls.__name__, cls)
    mod.Nested = types.SimpleNamespace(Good=GoodPredictor)
    mod.NOT_CALLABLE = 42
    monkeypatch.setitem(sys.modules, mod.__name__, mod)
    return mod.__name__


@pytest.mark.parametrize("spec", ["none", "None", " NONE "])
def test_make_predictor_none_disables(spec: str) -> None:
    assert make_predictor(spec) is None


@pytest.mark.parametrize("spec", ["markov", "Markov", " markov "])
def test_make_predictor_builtin(spec: str) -> None:
    p = make_predictor(spec)
    assert isinstance(p, MarkovPredictor) and p.name == "markov"
    assert make_predictor(spec) is not p  # a new instance each time
    assert set(PREDICTORS) == {"markov"}


@pytest.mark.parametrize("attr", ["GoodPredictor", "Nested.Good"])
def test_make_predictor_custom(custom_module: str, attr: str) -> None:
    p = make_predictor(f"{custom_module}:{attr}")
    assert isinstance(p, GoodPredictor)
    proto: Predictor = p  # it satisfies the protocol
    assert proto.name == "good"


@pytest.mark.parametrize("spec, needle", [
    ("", "expected 'none'"),
    ("   ", "expected 'none'"),
    (None, "expected 'none'"),
    (3, "expected 'none'"),
    ("markof", "did you mean 'markov'"),
    ("nonee", "did you mean 'none'"),
    ("lstm", "unknown predictor 'lstm'"),
    ("pkg.mod.Class", "package.module:Class"),
    ("pkg mod:Class", "not a valid import path"),
    ("pkg:", "not a valid import path"),
    (":Class", "not a valid import path"),
    ("a:b:c", "not a valid import path"),
    ("no_such_module_for_prefetch:X", "cannot import 'no_such_module_for_prefetch'"),
    ("{mod}:Missing", "has no attribute 'Missing'"),
    ("{mod}:Nested.Missing", "has no attribute 'Missing'"),
    ("{mod}:NOT_CALLABLE", "is a int, not a predictor class"),
    ("{mod}:NoName", "lacks name"),
    ("{mod}:NoPredict", "lacks predict"),
    ("{mod}:NeedsArgs", "with no arguments failed: TypeError"),
    ("{mod}:Exploding", "with no arguments failed: RuntimeError: boom"),
])
def test_make_predictor_bad_specs(custom_module: str, spec: object, needle: str) -> None:
    if isinstance(spec, str):
        spec = spec.format(mod=custom_module)
    with pytest.raises(ConfigError, match=re.escape(needle)) as info:
        make_predictor(spec)  # type: ignore[arg-type]
    assert str(info.value).startswith("prefetch:")
    assert info.value.status == 400


def test_make_predictor_module_that_fails_to_import(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "prefetch_bad_import_fixture.py").write_text("raise ImportError('half installed')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ConfigError, match="importing 'prefetch_bad_import_fixture' .* failed: ImportError"):
        make_predictor("prefetch_bad_import_fixture:X")
