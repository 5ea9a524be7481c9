"""``speculative`` settings: server-wide or per model, checked at start, handed to the runner."""

from __future__ import annotations

import pytest
from config_helpers import error, load

from mullama.config import model_settings
from mullama.config.speculative import OFF
from mullama.serving.loading import load_params


def test_off_unless_set_and_a_model_table_replaces_the_server_one(tmp_path):
    assert model_settings(load(tmp_path), "m", "m").speculative == OFF
    s = load(tmp_path, "[speculative]\ntypes = ['ngram-simple']\nn_max = 8\n"
                       "[models.big.speculative]\ntypes = ['ngram-map-k', 'ngram-mod']\n"
                       "[models.off.speculative]\ntypes = []\n")
    assert model_settings(s, "m", "m").speculative.types == ("ngram-simple",)
    assert model_settings(s, "m", "m").speculative.n_max == 8
    big = model_settings(s, "big", "big").speculative
    assert big.types == ("ngram-map-k", "ngram-mod") and big.n_max == 16  # the whole table, defaults included
    assert model_settings(s, "off", "off").speculative.types == ()


@pytest.mark.parametrize("table, says", [
    ("types = ['draft-simple']", "not supported yet"), ("types = ['typo']", "is not one of"),
    ("n_max = 0", "n_max"), ("n_min = 9\nn_max = 4", "n_min"), ("ngram_n = 0", "ngram_n"),
    ("ngram_min_hits = 0", "ngram_min_hits"), ("n_maximum = 3", "n_maximum"),
])
def test_bad_values_fail_at_start_with_their_place(tmp_path, table, says):
    assert says in error(tmp_path, f"[models.m.speculative]\n{table}\n")


def test_the_runner_gets_it_in_its_load_parameters(tmp_path):
    from types import SimpleNamespace

    s = load(tmp_path, "[speculative]\ntypes = ['ngram-map-k']\nn_min = 2\n")
    entry = SimpleNamespace(path="/m.gguf")
    p = load_params(entry, model_settings(s, "m", "m"), "alloc", None)  # type: ignore[arg-type]
    assert p.speculative is not None and p.speculative.types == ["ngram-map-k"] and p.speculative.n_min == 2
    assert load_params(entry, model_settings(load(tmp_path), "m", "m"), "alloc", None).speculative is None  # type: ignore[arg-type]
