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
    ("types = ['draft-simple']", "needs draft_model"), ("types = ['typo']", "is not one of"),
    ("draft_model = 'CONFIG'\ntypes = ['ngram-mod']", "leaves out draft-simple"),
    ("draft_model = 'CONFIG'\ndraft_p_min = 2.0", "draft_p_min"),
    ("draft_model = 'CONFIG'\ndraft_gpu_layers = -3", "draft_gpu_layers"),
    ("n_max = 0", "n_max"), ("n_min = 9\nn_max = 4", "n_min"), ("ngram_n = 0", "ngram_n"),
    ("ngram_min_hits = 0", "ngram_min_hits"), ("n_maximum = 3", "n_maximum"),
])
def test_bad_values_fail_at_start_with_their_place(tmp_path, table, says):
    table = table.replace("CONFIG", str(tmp_path / "draft.gguf"))
    (tmp_path / "draft.gguf").write_bytes(b"GGUF")
    assert says in error(tmp_path, f"[models.m.speculative]\n{table}\n")


def test_a_draft_model_alone_means_draft_simple_and_reaches_the_runner(tmp_path):
    from types import SimpleNamespace

    draft = tmp_path / "draft.gguf"
    draft.write_bytes(b"GGUF")
    s = load(tmp_path, f"[models.m.speculative]\ndraft_model = '{draft}'\nn_max = 4\ndraft_p_min = 0.5\n")
    cfg = model_settings(s, "m", "m").speculative
    assert cfg.types == ("draft-simple",) and cfg.draft_model == str(draft)
    p = load_params(SimpleNamespace(path="/m.gguf"), model_settings(s, "m", "m"), "alloc", None)  # type: ignore[arg-type]
    assert p.speculative is not None and p.speculative.types == ["draft-simple"]
    assert (p.speculative.draft_model, p.speculative.n_max, p.speculative.draft_p_min) == (str(draft), 4, 0.5)
    assert model_settings(load(tmp_path, "[speculative]\nn_max = 4\n"), "m", "m").speculative.types == (
        "ngram-map-k",)


def test_the_runner_gets_it_in_its_load_parameters(tmp_path):
    from types import SimpleNamespace

    s = load(tmp_path, "[speculative]\ntypes = ['ngram-map-k']\nn_min = 2\n")
    entry = SimpleNamespace(path="/m.gguf")
    p = load_params(entry, model_settings(s, "m", "m"), "alloc", None)  # type: ignore[arg-type]
    assert p.speculative is not None and p.speculative.types == ["ngram-map-k"] and p.speculative.n_min == 2
    assert load_params(entry, model_settings(load(tmp_path), "m", "m"), "alloc", None).speculative is None  # type: ignore[arg-type]
