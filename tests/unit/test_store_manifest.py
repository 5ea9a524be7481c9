"""Model store on disk: manifests (atomic, skipped when bad), catalog resolution of pulled names (never a
path), rm and copy, the free-space check."""

from __future__ import annotations

import os
from pathlib import Path

import gguf
import numpy as np
import pytest

from mullama.models.catalog import Catalog
from mullama.core.errors import (
    InsufficientStorage, InvalidArgument, InvalidModelName, InvalidState, ModelNotFound,
)
from mullama.store import download
from mullama.models import manifest
from mullama.store.hub import Hub
from mullama.models.manifest import Manifest, ManifestFile
from mullama.store.store import Store, check_new_name

FT = gguf.LlamaFileType
REPO = "Test-Org/Tiny-GGUF"


def write_model(path: Path, file_type: FT = FT.MOSTLY_Q4_K_M) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    w = gguf.GGUFWriter(str(path), "llama")
    w.add_block_count(1)
    w.add_context_length(256)
    w.add_file_type(file_type)
    w.add_tensor("token_embd.weight", np.ones((8, 4), dtype=np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


def pulled(models: Path, quant: str = "q4_k_m", ft: FT = FT.MOSTLY_Q4_K_M, repo: str = REPO) -> Manifest:
    """What a pull leaves: the file in its family directory and its manifest."""
    name = f"tiny-{quant.upper()}.gguf"
    path = write_model(models / "tiny" / name, ft)
    m = Manifest(
        name=f"{repo.lower()}:{quant}",
        repo=repo,
        revision="main",
        commit="c" * 40,
        quant=quant,
        endpoint="http://hub",
        size=path.stat().st_size,
        pulled_at="2026-01-01T00:00:00+00:00",
        files=(ManifestFile(name=name, path=f"tiny/{name}", size=path.stat().st_size, sha256="a" * 64),),
    )
    manifest.write(models, m)
    return m


@pytest.fixture
def models(tmp_path: Path) -> Path:
    return tmp_path / "models"


def test_manifest_round_trip_is_atomic_and_hidden(models: Path) -> None:
    m = pulled(models)
    files = sorted(p.name for p in (models / ".manifests").iterdir())
    assert len(files) == 1 and files[0].endswith(".json") and not any(f.endswith(".tmp") for f in files)
    assert manifest.read_all(models) == [m]
    cat = Catalog.scan([models])
    assert [e.name for e in cat.entries()] == ["tiny:q4_k_m"]  # the .manifests directory is not a model
    assert manifest.delete(models, m.name) and not manifest.delete(models, m.name)


def test_bad_manifests_are_skipped_and_reported(models: Path) -> None:
    pulled(models)
    folder = models / ".manifests"
    (folder / "broken.json").write_text("{not json")
    (folder / "escape.json").write_text(
        '{"name": "x/y:z", "files": [{"name": "a", "path": "../../etc/passwd", "size": 1}]}'
    )
    errors: list[str] = []
    assert len(manifest.read_all(models, errors)) == 1
    assert len(errors) == 2 and all("skipped" in e for e in errors)
    assert any("broken.json" in e for e in Catalog.scan([models]).dir_errors)


@pytest.mark.parametrize(
    "name",
    [
        "test-org/tiny-gguf:q4_k_m",
        "Test-Org/Tiny-GGUF:Q4_K_M",
        "hf.co/test-org/tiny-gguf:q4_k_m",
        "test-org/tiny-gguf",
        "test-org/tiny-gguf:latest",
        "tiny:q4_k_m",
        "tiny",
    ],
)
def test_pulled_model_resolves_by_pulled_and_catalog_names(models: Path, name: str) -> None:
    m = pulled(models)
    entry = Catalog.scan([models]).resolve(name)
    assert entry.name == "tiny:q4_k_m" and entry.origin == m
    assert entry.describe()["origin"]["repo"] == REPO and entry.describe()["origin"]["pulled_at"]


def test_bare_repo_name_prefers_the_usual_default(models: Path) -> None:
    pulled(models, "q8_0", FT.MOSTLY_Q8_0)
    pulled(models, "q4_k_m", FT.MOSTLY_Q4_K_M)
    cat = Catalog.scan([models])
    assert cat.resolve("test-org/tiny-gguf").name == "tiny:q4_k_m"
    assert cat.resolve("test-org/tiny-gguf:q8_0").name == "tiny:q8_0"


@pytest.mark.parametrize(
    "name,fragment,status",
    [
        ("other/repo", "has not been pulled", 404),
        ("test-org/tiny-gguf:q2_k", "has not been pulled", 404),
        ("../models/tiny/tiny-Q4_K_M.gguf", "path separators", 400),
        ("/etc/passwd", "path separators", 400),
        ("tiny/tiny-Q4_K_M.gguf", "has not been pulled", 404),
        ("test-org/tiny-gguf/../x", "path separators", 400),
    ],
)
def test_slash_names_never_touch_the_file_system(models: Path, name: str, fragment: str, status: int) -> None:
    pulled(models)
    with pytest.raises((InvalidModelName, ModelNotFound)) as info:
        Catalog.scan([models]).resolve(name)
    assert fragment in str(info.value) and info.value.status == status


def test_manifest_whose_file_is_gone_is_reported(models: Path) -> None:
    m = pulled(models)
    (models / m.files[0].path).unlink()
    cat = Catalog.scan([models])
    assert any("is missing" in e for e in cat.dir_errors)
    with pytest.raises(ModelNotFound, match="not been pulled"):
        cat.resolve(m.name)


def store(models: Path) -> Store:
    return Store([models], Hub("http://127.0.0.1:9", None))


def test_present_checks_the_files(models: Path) -> None:
    from mullama.models.names import parse_pull_name

    m = pulled(models)
    s = store(models)
    assert s.present(parse_pull_name("test-org/tiny-gguf:Q4_K_M")) == m
    assert s.present(parse_pull_name("test-org/tiny-gguf")) == m
    assert s.present(parse_pull_name("test-org/tiny-gguf:q8_0")) is None
    with (models / m.files[0].path).open("ab") as fh:
        fh.write(b"x")
    assert s.present(parse_pull_name("test-org/tiny-gguf:q4_k_m")) is None  # wrong size: pull again


def test_copy_then_rm_keeps_files_until_the_last_name(models: Path) -> None:
    m = pulled(models)
    s = store(models)
    assert s.copy(Catalog.scan([models]), m.name, "mine") == {"source": "tiny:q4_k_m", "destination": "mine"}
    cat = Catalog.scan([models])
    assert cat.resolve("mine").name == cat.resolve("mine:latest").name == "tiny:q4_k_m"
    assert cat.manifest_for("mine").copied_from == "tiny:q4_k_m"
    assert cat.resolve("mine").origin == m  # the origin stays the pull's
    s.copy(cat, "mine", "Other/Name:v1")
    assert Catalog.scan([models]).resolve("other/name:v1").name == "tiny:q4_k_m"
    out = s.remove(Catalog.scan([models]), "hf.co/test-org/tiny-gguf:q4_k_m")
    assert out["names"] == [m.name] and out["files"] == []
    assert (models / m.files[0].path).exists()
    out = s.remove(Catalog.scan([models]), "tiny:q4_k_m")  # the catalog name: everything
    assert sorted(out["names"]) == ["mine", "other/name:v1"] and len(out["files"]) == 1
    assert not (models / "tiny").exists() and manifest.read_all(models) == []
    with pytest.raises(ModelNotFound):
        s.remove(Catalog.scan([models]), "tiny:q4_k_m")


@pytest.mark.parametrize(
    "dest,error",
    [
        ("tiny", InvalidState),
        ("tiny:q4_k_m", InvalidState),
        ("bad name", InvalidModelName),
        ("a:b:c", InvalidModelName),
        ("../x", InvalidModelName),
        ("x/", InvalidModelName),
        ("", InvalidModelName),
        (":tag", InvalidModelName),
        ("a\x00", InvalidModelName),
    ],
)
def test_copy_destination_is_checked(models: Path, dest: str, error: type[Exception]) -> None:
    pulled(models)
    write_model(models / "other" / "o-Q8_0.gguf", FT.MOSTLY_Q8_0)
    with pytest.raises(error):
        store(models).copy(Catalog.scan([models]), "other", dest)


def test_check_new_name() -> None:
    assert check_new_name("My-Model:V1") == "my-model:v1"
    assert check_new_name("hf.co/Org/Repo:Q4") == "org/repo:q4"


def test_rm_refuses_files_outside_the_models_dirs(models: Path, tmp_path: Path) -> None:
    outside = write_model(tmp_path / "elsewhere" / "x-Q8_0.gguf", FT.MOSTLY_Q8_0)
    cat = Catalog.scan([models], extra=[("ext", outside, "config")])
    with pytest.raises(InvalidArgument, match="config"):
        store(models).remove(cat, "ext")
    assert outside.exists()


def test_free_space_check(models: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    download.check_space(models, 1)  # plenty here
    monkeypatch.setattr(download, "disk_free", lambda _folder: 100 << 20)
    with pytest.raises(InsufficientStorage) as info:
        download.check_space(models / "fam", 1 << 30)
    assert info.value.status == 507
    assert "needs 1.0 GiB" in str(info.value) and "100.0 MiB is free" in str(info.value)


def test_partial_and_lock_files_are_invisible_to_the_catalog(models: Path) -> None:
    final = models / "fam" / "m-Q8_0.gguf"
    write_model(download.partial_path(final), FT.MOSTLY_Q8_0)
    download.lock_path(final).write_text("")
    assert Catalog.scan([models]).entries() == []
    assert os.path.basename(download.partial_path(final)).startswith(".")


def test_removing_a_copy_name_never_deletes_the_files(models: Path) -> None:
    """A copy of a file placed by hand (no pull manifest): deleting the copy drops only its name."""
    own = write_model(models / "fam" / "fam-Q8_0.gguf", FT.MOSTLY_Q8_0)
    s = store(models)
    s.copy(Catalog.scan([models]), "fam:q8_0", "alias1")
    out = s.remove(Catalog.scan([models]), "alias1")
    assert out == {"model": "fam:q8_0", "names": ["alias1"], "files": []}
    assert own.exists() and Catalog.scan([models]).resolve("fam:q8_0").path == own
    with pytest.raises(ModelNotFound):
        Catalog.scan([models]).resolve("alias1")


def test_copy_never_overwrites_a_pulled_name(models: Path) -> None:
    m = pulled(models)
    with pytest.raises(InvalidState):
        store(models).copy(Catalog.scan([models]), m.name, m.name)
    assert Catalog.scan([models]).manifest_for(m.name).kind == "pull"


def test_removing_a_config_alias_is_refused(models: Path) -> None:
    write_model(models / "fam" / "fam-Q8_0.gguf", FT.MOSTLY_Q8_0)
    cat = Catalog.scan([models], aliases={"short": "fam:q8_0"})
    with pytest.raises(InvalidArgument, match="alias from the config"):
        store(models).remove(cat, "short")
