"""Catalog: naming, discovery, resolution, default variants and rescans over tiny GGUFs in tmp dirs."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import gguf
import numpy as np
import pytest

from mullama.core.errors import InvalidModelName, ModelNotFound, ModelUnavailable
from mullama.models import discovery
from mullama.models.catalog import Catalog
from mullama.models.discovery import SYMLINK_ESCAPE
from mullama.models.entry import ModelEntry
from mullama.models.names import family_from_stem, quant_from_filename, slugify, validate_name

FT = gguf.LlamaFileType


def write_model(path: Path, file_type: FT = FT.MOSTLY_Q4_1, *, n_layer: int = 1, pad: int = 0,
                split_max_tensors: int = 0) -> Path:
    """A minimal llama GGUF labelled with ``file_type`` (the weights stay F32: only the header matters)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    w = gguf.GGUFWriter(str(path), "llama", split_max_tensors=split_max_tensors)
    w.add_block_count(n_layer)
    w.add_context_length(256)
    w.add_file_type(file_type)
    w.add_tensor("token_embd.weight", np.ones((8, 4), dtype=np.float32))
    for i in range(n_layer):
        w.add_tensor(f"blk.{i}.attn_norm.weight", np.ones(4 + pad, dtype=np.float32))
    w.add_tensor("output_norm.weight", np.ones(4, dtype=np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


def names(cat: Catalog) -> list[str]:
    return [e.name for e in cat.entries()]


# ---------------------------------------------------------------- naming (pure)


@pytest.mark.parametrize("text,slug", [
    ("SmolLM2-135M-Instruct", "smollm2-135m-instruct"), ("Weird Name!!", "weird-name"),
    ("a__b..c", "a__b..c"),
    ("--x--", "x"), ("Ünïcode Model", "n-code-model"), ("", "model"), ("...", "model"), ("a:b/c", "a-b-c"),
])
def test_slugify(text: str, slug: str) -> None:
    assert slugify(text) == slug


@pytest.mark.parametrize("stem,quant,family", [
    ("SmolLM2-135M-Instruct.Q4_1", "q4_1", "smollm2-135m-instruct"),
    ("Meta-Llama-3-8B-Instruct-Q4_K_M", "q4_k_m", "meta-llama-3-8b-instruct"),
    ("mistral-7b-instruct-v0.2.Q5_K_S", "q5_k_s", "mistral-7b-instruct-v0.2"),
    ("phi-3-mini.IQ4_XS", "iq4_xs", "phi-3-mini"),
    ("qwen2-0_5b-instruct-iq2_xxs", "iq2_xxs", "qwen2-0_5b-instruct"),
    ("gemma-2b-it-bf16", "bf16", "gemma-2b-it"),
    ("tinyllama_f16", "f16", "tinyllama"),
    ("model-Q8_0-imatrix", "q8_0", "model-imatrix"),
    ("Q6_K", "q6_k", "model"),
    ("llama-2-7b.q2_k", "q2_k", "llama-2-7b"),
    ("no-quant-here", None, "no-quant-here"),
    ("fq4_0x", None, "fq4_0x"),  # a token glued to letters is not a quant
])
def test_quant_and_family_from_stem(stem: str, quant: str | None, family: str) -> None:
    assert quant_from_filename(stem) == quant
    assert family_from_stem(stem) == family


def test_scan_names_files(tmp_path: Path) -> None:
    m = tmp_path / "models"
    write_model(m / "SmolLM2-135M-Instruct.Q4_1.gguf")
    write_model(m / "llama3" / "whatever.gguf", FT.MOSTLY_Q4_K_M)
    write_model(m / "Llama3" / "deeper" / "x.GGUF", FT.MOSTLY_Q8_0)  # any case of .gguf; first-level family
    write_model(m / "Weird Name!.gguf", FT.MOSTLY_F16)
    write_model(m / "plain.gguf", FT.ALL_F32)
    for ignored in (".hidden.gguf", "x.gguf.partial", "y.gguf.tmp", "notes.txt", ".cache/z.gguf"):
        (m / ignored).parent.mkdir(parents=True, exist_ok=True)
        (m / ignored).write_bytes(b"junk")
    cat = Catalog.scan([m])
    assert names(cat) == ["llama3:q4_k_m", "llama3:q8_0", "plain:f32", "smollm2-135m-instruct:q4_1",
                          "weird-name:f16"]
    e = cat.resolve("smollm2-135m-instruct:q4_1")
    assert (e.family, e.variant, e.source) == ("smollm2-135m-instruct", "q4_1", "models_dir")
    assert e.parts == (e.path,) and e.error is None
    assert e.header is not None and e.header.quantization == "Q4_1" and e.size_bytes == e.path.stat().st_size
    assert cat.dir_errors == []


def test_duplicate_variants_get_the_stem(tmp_path: Path) -> None:
    m = tmp_path / "models"
    write_model(m / "llama3" / "b-8b.gguf", FT.MOSTLY_Q4_K_M)
    write_model(m / "llama3" / "a-70b.Q4_K_M.gguf", FT.MOSTLY_Q4_K_M)
    write_model(m / "llama3" / "sub" / "a-70b.Q4_K_M.gguf", FT.MOSTLY_Q4_K_M)
    cat = Catalog.scan([m])
    got = {e.name: e.path.relative_to(m).as_posix() for e in cat.entries()}
    assert got == {"llama3:q4_k_m": "llama3/a-70b.Q4_K_M.gguf", "llama3:q4_k_m-b-8b": "llama3/b-8b.gguf",
                   "llama3:q4_k_m-a-70b": "llama3/sub/a-70b.Q4_K_M.gguf"}
    assert Catalog.scan([m]).entries() == cat.entries()  # deterministic


def test_same_name_in_two_dirs(tmp_path: Path) -> None:
    write_model(tmp_path / "a" / "m.Q4_0.gguf", FT.MOSTLY_Q4_0)
    write_model(tmp_path / "b" / "m.Q4_0.gguf", FT.MOSTLY_Q4_0)
    cat = Catalog.scan([tmp_path / "b", tmp_path / "a"])
    assert cat.resolve("m:q4_0").path == tmp_path / "b" / "m.Q4_0.gguf"  # earlier dir wins the plain name
    assert names(cat) == ["m:q4_0", "m:q4_0-m"]


# ---------------------------------------------------------------- broken files and dirs


def test_broken_files_are_listed_with_errors(tmp_path: Path) -> None:
    m = tmp_path / "models"
    good = write_model(m / "phi" / "good.Q8_0.gguf", FT.MOSTLY_Q8_0)
    (m / "phi" / "broken-Q5_K_M.gguf").write_text("not a model")
    (m / "noquant.gguf").write_bytes(b"")
    cut = m / "cut.Q4_0.gguf"
    cut.write_bytes(good.read_bytes()[:-24])  # the last tensor's 16 bytes and 16 of padding: cut into data
    cat = Catalog.scan([m])
    by = {e.name: e for e in cat.entries()}
    assert set(by) == {"phi:q8_0", "phi:q5_k_m", "noquant:default", "cut:q4_0"}
    assert "bad magic" in by["phi:q5_k_m"].error and by["phi:q5_k_m"].header is None
    assert "truncated" in by["cut:q4_0"].error and "bad magic" in by["noquant:default"].error
    assert by["phi:q8_0"].error is None
    with pytest.raises(ModelUnavailable, match="bad magic") as info:
        cat.resolve("phi:q5_k_m")
    assert info.value.status == 422
    assert cat.resolve("phi").name == "phi:q8_0"  # a broken variant is never the default when one works
    json.dumps([e.describe() for e in cat.entries()])


def test_missing_and_bad_dirs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    good = tmp_path / "good"
    write_model(good / "m.gguf")
    write_model(good / "locked" / "n.gguf")
    afile = tmp_path / "file"
    afile.write_text("x")
    unreadable = tmp_path / "unreadable"
    unreadable.mkdir()
    real_scandir = os.scandir

    def scandir(path):  # root ignores permissions, so make the failure by hand
        if Path(path) in (unreadable, good / "locked"):
            raise PermissionError(13, "Permission denied", str(path))
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)
    cat = Catalog.scan([tmp_path / "missing", afile, unreadable, good])
    assert names(cat) == ["m:q4_1"]
    errors = cat.dir_errors
    assert len(errors) == 4
    assert f"models directory {tmp_path / 'missing'} does not exist" in errors
    assert f"models directory {afile} is not a directory" in errors
    assert any(str(unreadable) in e and "Permission denied" in e for e in errors)
    assert any(str(good / "locked") in e for e in errors)


def test_symlinks(tmp_path: Path) -> None:
    m, outside = tmp_path / "models", tmp_path / "elsewhere"
    target = write_model(outside / "secret.Q4_0.gguf", FT.MOSTLY_Q4_0)
    inside = write_model(m / "real.Q8_0.gguf", FT.MOSTLY_Q8_0)
    (m / "escape.Q4_0.gguf").symlink_to(target)
    (m / "dangling.gguf").symlink_to(m / "gone.gguf")
    (m / "fam").mkdir()
    (m / "fam" / "link.gguf").symlink_to(inside)  # same file as real.Q8_0: listed once
    (m / "dirlink").symlink_to(outside, target_is_directory=True)  # directory links are not followed
    cat = Catalog.scan([m])
    by = {e.name: e for e in cat.entries()}
    assert set(by) == {"escape:q4_0", "dangling:default", "fam:q8_0"}
    assert by["escape:q4_0"].error == SYMLINK_ESCAPE and by["escape:q4_0"].header is None
    assert "cannot stat" in by["dangling:default"].error
    with pytest.raises(InvalidModelName, match="outside the models directories") as info:
        cat.resolve("escape")
    assert info.value.status == 400
    # a link into another models dir is fine
    cat2 = Catalog.scan([m, outside])
    assert cat2.resolve("escape:q4_0").error is None


def test_split_model_is_one_entry(tmp_path: Path) -> None:
    m = tmp_path / "models"
    write_model(m / "big.gguf", FT.MOSTLY_Q4_0, n_layer=4, split_max_tensors=2)
    parts = sorted(m.glob("big-*.gguf"))
    assert len(parts) == 3
    cat = Catalog.scan([m])
    (e,) = cat.entries()
    assert (e.name, e.path, e.parts) == ("big:q4_0", parts[0], tuple(parts))
    assert e.size_bytes == sum(p.stat().st_size for p in parts)
    assert e.header is not None and e.header.n_layer == 4 and e.header.parameters == 32 + 4 * 4 + 4
    assert cat.resolve("big") == e and cat.resolve("big-00001-of-00003.gguf") == e
    parts[1].unlink()
    (broken,) = Catalog.scan([m]).entries()
    assert broken.error == "split model is missing part(s) 2 of 3" and broken.parts == (parts[0], parts[2])


# ---------------------------------------------------------------- default variants


@pytest.mark.parametrize("present,configured,expected", [
    ([FT.MOSTLY_F16, FT.MOSTLY_Q8_0, FT.MOSTLY_Q4_0], None, "q4_0"),
    ([FT.MOSTLY_Q4_1, FT.MOSTLY_Q4_K_M, FT.MOSTLY_Q4_K_S], None, "q4_k_m"),
    ([FT.MOSTLY_Q6_K, FT.MOSTLY_Q5_K_M, FT.ALL_F32], None, "q5_k_m"),
    ([FT.MOSTLY_BF16, FT.ALL_F32], None, "bf16"),
    ([FT.MOSTLY_F16, FT.MOSTLY_Q8_0], "f16", "f16"),
    ([FT.MOSTLY_F16, FT.MOSTLY_Q8_0], "q2_k", "q8_0"),  # configured but absent: the preference order
])
def test_default_variant_order(tmp_path: Path, present: list[FT], configured: str | None,
                               expected: str) -> None:
    for ft in present:
        write_model(tmp_path / "fam" / f"{ft.name}.gguf", ft)
    defaults = {"FAM": configured} if configured else {}
    cat = Catalog.scan([tmp_path], default_variants=defaults)
    assert cat.default_variant("fam").variant == expected
    assert cat.resolve("fam").variant == cat.resolve("fam:latest").variant == expected
    assert [e.variant for e in cat.variants("fam")] == sorted(e.variant for e in cat.variants("fam"))


def test_default_without_preferred_variant_is_the_smallest(tmp_path: Path) -> None:
    write_model(tmp_path / "fam" / "a.gguf", FT.MOSTLY_IQ2_XS, pad=64)
    write_model(tmp_path / "fam" / "b.gguf", FT.MOSTLY_IQ3_S)
    assert Catalog.scan([tmp_path]).default_variant("fam").variant == "iq3_s"


def test_broken_default_only_when_nothing_works(tmp_path: Path) -> None:
    (tmp_path / "fam").mkdir()
    (tmp_path / "fam" / "m.Q4_K_M.gguf").write_text("broken")
    write_model(tmp_path / "fam" / "m.f16.gguf", FT.MOSTLY_F16)
    cat = Catalog.scan([tmp_path], default_variants={"fam": "q4_k_m"})
    assert cat.default_variant("fam").variant == "f16"
    (tmp_path / "fam" / "m.f16.gguf").unlink()
    cat = Catalog.scan([tmp_path])
    assert cat.default_variant("fam").variant == "q4_k_m"
    with pytest.raises(ModelUnavailable):
        cat.resolve("fam")
    with pytest.raises(ModelNotFound):
        cat.default_variant("nope")
    assert cat.variants("nope") == []


# ---------------------------------------------------------------- resolve


@pytest.fixture
def cat(tmp_path: Path) -> Catalog:
    m = tmp_path / "models"
    write_model(m / "SmolLM2-135M-Instruct.Q4_1.gguf", FT.MOSTLY_Q4_1)
    write_model(m / "llama3" / "Meta-Llama-3-8B.Q4_K_M.gguf", FT.MOSTLY_Q4_K_M)
    write_model(m / "llama3" / "Meta-Llama-3-8B.Q8_0.gguf", FT.MOSTLY_Q8_0)
    (m / "broken.gguf").write_text("nope")
    return Catalog.scan([m], aliases={"GPT-4": "llama3:q8_0", "small": "smollm2-135m-instruct",
                                      "ghost": "nothing:here", "llama3": "smollm2-135m-instruct"})


@pytest.mark.parametrize("query,expected", [
    ("llama3:q8_0", "llama3:q8_0"),
    ("LLAMA3:Q8_0", "llama3:q8_0"),
    ("  llama3:q8_0 ", "llama3:q8_0"),
    ("llama3", "llama3:q4_k_m"),  # a family beats an alias of the same name
    ("llama3:latest", "llama3:q4_k_m"),
    ("Llama3:LATEST", "llama3:q4_k_m"),
    ("smollm2-135m-instruct", "smollm2-135m-instruct:q4_1"),
    ("gpt-4", "llama3:q8_0"),
    ("small", "smollm2-135m-instruct:q4_1"),
    ("SmolLM2-135M-Instruct.Q4_1", "smollm2-135m-instruct:q4_1"),
    ("SmolLM2-135M-Instruct.Q4_1.gguf", "smollm2-135m-instruct:q4_1"),
    ("meta-llama-3-8b.q8_0", "llama3:q8_0"),
])
def test_resolve(cat: Catalog, query: str, expected: str) -> None:
    assert cat.resolve(query).name == expected


@pytest.mark.parametrize("query,error,fragment", [
    ("ghost", ModelNotFound, "'ghost' is an alias of 'nothing:here'"),
    ("llama4", ModelNotFound, "did you mean: llama3"),
    ("smollm2", ModelNotFound, "smollm2-135m-instruct"),
    ("zzzzzzzzzzzzzzzz", ModelNotFound, "not found (4 models in the catalog)"),
    ("llama3:q2_k", ModelNotFound, "llama3:q"),
    ("broken", ModelUnavailable, "bad magic"),
    ("../models/x", InvalidModelName, "path separators"),
    ("a/b", ModelNotFound, "has not been pulled"),  # a hub name: 404 as in Ollama (clients pull on it)
    ("a/b/c", InvalidModelName, "path separators"),
    ("a\\b", InvalidModelName, "path separators"),
    ("/etc/passwd", InvalidModelName, "path separators"),
    ("..", InvalidModelName, "paths"),
    (".", InvalidModelName, "paths"),
    ("a\x00b", InvalidModelName, "control"),
    ("a\nb", InvalidModelName, "control"),
    ("a\x1bb", InvalidModelName, "control"),
    ("x" * 257, InvalidModelName, "at most 256"),
    ("", InvalidModelName, "empty"),
    ("   ", InvalidModelName, "empty"),
    (123, InvalidModelName, "string"),
])
def test_resolve_errors(cat: Catalog, query: object, error: type[Exception], fragment: str) -> None:
    with pytest.raises(error, match=None) as info:
        cat.resolve(query)  # type: ignore[arg-type]
    assert fragment in str(info.value)
    assert info.value.status == {ModelNotFound: 404, ModelUnavailable: 422, InvalidModelName: 400}[error]


def test_not_found_lists_at_most_five(tmp_path: Path) -> None:
    for i in range(8):
        write_model(tmp_path / f"model{i}.gguf")
    with pytest.raises(ModelNotFound) as info:
        Catalog.scan([tmp_path]).resolve("model")
    suggestions = str(info.value).split("did you mean: ")[1].rstrip("?").split(", ")
    assert len(suggestions) == 5 and all(s.startswith("model") for s in suggestions)


def test_empty_catalog(tmp_path: Path) -> None:
    cat = Catalog.scan([tmp_path])
    assert cat.entries() == [] and cat.dir_errors == []
    with pytest.raises(ModelNotFound, match="empty"):
        cat.resolve("anything")


def test_validate_name_accepts_ordinary_names() -> None:
    for ok in ("llama3:8b-q4_k_m", "a..b", "Qwen2.5-7B", "x" * 256):
        assert validate_name(ok) == ok


# ---------------------------------------------------------------- extras, ids, describe


def test_extras_bundled_and_config(tmp_path: Path) -> None:
    cache, m = tmp_path / "cache", tmp_path / "models"
    bundled = write_model(cache / "SmolLM2-135M-Instruct.Q4_1.gguf")
    write_model(m / "other.Q8_0.gguf", FT.MOSTLY_Q8_0)
    shutil.copy(bundled, m / "copy.gguf")  # a copy is another file: listed
    (m / "same.gguf").symlink_to(bundled)  # the same file (outside, but an extra names it): listed once
    extra = [("smollm2", bundled, "bundled"), ("Mine:Custom", m / "other.Q8_0.gguf", "config"),
             ("ghost", tmp_path / "missing.gguf", "config")]
    cat = Catalog.scan([m], extra=extra)
    by = {e.name: e for e in cat.entries()}
    assert set(by) == {"smollm2:q4_1", "mine:custom", "ghost:default", "copy:q4_1"}
    assert by["smollm2:q4_1"].source == "bundled" and by["mine:custom"].source == "config"
    assert "cannot stat" in by["ghost:default"].error
    assert cat.resolve("smollm2").path == bundled


def test_describe_and_id(tmp_path: Path) -> None:
    path = write_model(tmp_path / "m.Q4_1.gguf")
    (e,) = Catalog.scan([tmp_path]).entries()
    d = e.describe()
    json.dumps(d)
    assert {"name", "family", "variant", "id", "path", "size", "modified", "source", "error", "architecture",
            "parameters", "parameters_label", "quantization", "context_length", "n_layer", "n_embd", "n_head",
            "n_head_kv", "has_chat_template"} <= set(d)
    assert (d["architecture"], d["parameters_label"], d["n_layer"]) == ("llama", "40", 1)
    assert d["context_length"] == 256 and d["parts"] == [str(path)]
    assert len(e.id) == 12 and int(e.id, 16) >= 0
    assert Catalog.scan([tmp_path]).entries()[0].id == e.id
    os.utime(path, (1_000_000, 1_000_000))
    assert Catalog.scan([tmp_path]).entries()[0].id != e.id
    broken = ModelEntry(name="x:y", family="x", variant="y", path=path, parts=(path,), size_bytes=0,
                        modified=0.0, id="0" * 12, header=None, error="bad", source="config")
    assert "architecture" not in broken.describe() and broken.describe()["error"] == "bad"


def test_previous_reuses_unchanged_headers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    a = write_model(tmp_path / "a.gguf")
    write_model(tmp_path / "b.gguf", FT.MOSTLY_Q8_0)
    (tmp_path / "bad.gguf").write_text("x")
    calls: list[Path] = []
    real = discovery.read_header

    def counting(path, **kw):
        calls.append(path)
        return real(path, **kw)

    monkeypatch.setattr(discovery, "read_header", counting)
    first = Catalog.scan([tmp_path])
    assert len(calls) == 3
    second = Catalog.scan([tmp_path], previous=first)
    assert len(calls) == 3 and second.entries() == first.entries()
    os.utime(a, (2_000_000, 2_000_000))
    write_model(tmp_path / "c.gguf", FT.MOSTLY_F16)
    third = Catalog.scan([tmp_path], previous=second)
    assert sorted(p.name for p in calls[3:]) == ["a.gguf", "c.gguf"]
    assert names(third) == ["a:q4_1", "b:q8_0", "bad:default", "c:f16"]
