"""``mullama quantize``: a quantised copy by the engine, named for its type next to its family's other
variants, atomic (no half file), with clear errors for a bad type, a missing source or an existing output."""

from __future__ import annotations

import shutil

import gguf_factory
import pytest
from helpers import cpu_params

from mullama import engine
from mullama.cli.main import main
from mullama.cli.quantize import default_output


def _quant(path) -> str:
    with engine.Model(str(path), cpu_params()) as model:
        return model.info.quantization


def test_writes_the_type_asked_for_to_the_path_given(tiny_path, tmp_path, capsys) -> None:
    out = tmp_path / "out.gguf"
    assert main(["quantize", str(tiny_path), "q8_0", str(out), "-t", "2"]) == 0
    assert _quant(out) == "Q8_0"
    err = capsys.readouterr().err
    assert "quantize: 100%" in err and f"wrote {out}" in err
    assert not list(tmp_path.glob(".*.part"))


def test_by_default_the_copy_joins_its_family_as_a_variant(tiny_path, tmp_path, monkeypatch) -> None:
    family = tmp_path / "models" / "tiny"
    family.mkdir(parents=True)
    src = shutil.copy(tiny_path, family / "Tiny-Model.F32.gguf")
    monkeypatch.setenv("MULLAMA_MODELS_DIRS", str(tmp_path / "models"))
    monkeypatch.setenv("MULLAMA_BUNDLED_MODEL", "false")
    assert main(["quantize", "tiny", "Q4_0", "-t", "2"]) == 0  # by catalog name
    assert _quant(family / "Tiny-Model.Q4_0.gguf") == "Q4_0"
    assert main(["quantize", str(src), "Q4_0"]) == 1  # exists: refused ...
    assert main(["quantize", str(src), "Q4_0", "--force", "-t", "2"]) == 0  # ... unless forced


@pytest.mark.parametrize("name, want", [
    ("SmolLM2-135M-Instruct.Q4_1.gguf", "SmolLM2-135M-Instruct.Q8_0.gguf"),
    ("qwen2.5-7b-instruct-q4_k_m.gguf", "qwen2.5-7b-instruct.Q8_0.gguf"),
    ("model-f16.gguf", "model.Q8_0.gguf"),
    ("plain.gguf", "plain.Q8_0.gguf"),
])
def test_the_default_name_replaces_the_quantisation(tmp_path, name, want) -> None:
    models = tmp_path / "models"
    (models / "fam").mkdir(parents=True)
    assert default_output(models / "fam" / name, "q8_0", [models], "fam") == models / "fam" / want
    # outside every models directory (the bundled model's cache): the family's directory in the first one
    assert default_output(tmp_path / "cache" / name, "q8_0", [models], "fam") == models / "fam" / want


def test_bad_input_gets_a_clear_error(tiny_path, tmp_path, capsys, monkeypatch) -> None:
    monkeypatch.setenv("MULLAMA_MODELS_DIRS", str(tmp_path))
    monkeypatch.setenv("MULLAMA_BUNDLED_MODEL", "false")
    assert main(["quantize", str(tiny_path), "Q9_X", str(tmp_path / "o.gguf")]) == 1
    assert "unknown quantisation type 'Q9_X'" in capsys.readouterr().err
    assert not (tmp_path / "o.gguf").exists() and not list(tmp_path.glob(".*.part"))
    assert main(["quantize", "no-such-model", "Q8_0"]) == 1
    assert "neither a file nor a model of the catalog" in capsys.readouterr().err
    assert main(["quantize", str(tiny_path), "Q8_0", str(tiny_path), "--force"]) == 1  # never over its source
    assert "OUT is SRC" in capsys.readouterr().err
    assert main(["quantize", str(tiny_path), "Q4_0", str(tmp_path / "i.gguf"), "--imatrix", str(tmp_path / "nope")]) == 1
    assert "--imatrix: no file" in capsys.readouterr().err


def test_with_an_importance_matrix(tiny_path, tmp_path, capsys) -> None:
    imatrix = gguf_factory.write_imatrix(tmp_path / "imatrix.gguf", tiny_path)
    out = tmp_path / "w.gguf"
    assert main(["quantize", str(tiny_path), "q4_0", str(out), "--imatrix", str(imatrix), "-t", "2"]) == 0
    assert _quant(out) == "Q4_0" and f"with the importance matrix {imatrix}" in capsys.readouterr().err
