"""``mullama docs``: the pages the help and the API name (docs/NAME.md) are shown from a checkout or from
the installed copy (<prefix>/share/doc/mullama); a mistyped name gets the nearest page."""

from __future__ import annotations

from pathlib import Path

import pytest

from mullama.cli import docs
from mullama.cli.main import main
from mullama.core.errors import InvalidArgument, MullamaError

REPO_DOCS = Path(__file__).resolve().parents[2] / "docs"


def test_lists_every_page_with_its_title(capsys) -> None:
    assert main(["docs"]) == 0
    out = capsys.readouterr().out
    for page in REPO_DOCS.glob("*.md"):
        assert f"  {page.stem} " in out
    assert "Architecture" in out


def test_shows_a_page_by_name_or_by_the_path_the_help_gives(capsys) -> None:
    assert main(["docs", "docs/presets.md"]) == 0  # not a terminal: the markdown itself
    assert capsys.readouterr().out == (REPO_DOCS / "presets.md").read_text(encoding="utf-8")
    assert main(["docs", "configuration", "--path"]) == 0
    assert capsys.readouterr().out.strip() == str(REPO_DOCS / "configuration.md")


def test_a_mistyped_page_names_the_nearest_one(capsys) -> None:
    with pytest.raises(InvalidArgument, match="did you mean 'configuration'"):
        docs.page_path("confguration")
    assert main(["docs", "nothing-like-it"]) == 1
    err = capsys.readouterr().err
    assert "no page 'nothing-like-it'" in err and "presets" in err


def test_an_installed_copy_is_found_where_the_wheel_puts_it(tmp_path, monkeypatch) -> None:
    installed = tmp_path / "share" / "doc" / "mullama"
    installed.mkdir(parents=True)
    (installed / "architecture.md").write_text("# Architecture\\n")
    monkeypatch.setattr(docs, "docs_dirs", lambda: [tmp_path / "no-checkout" / "docs", installed])
    assert docs.find_docs() == installed
    monkeypatch.setattr(docs, "docs_dirs", lambda: [tmp_path / "nowhere"])
    with pytest.raises(MullamaError, match="not installed here"):
        docs.find_docs()


def test_the_installed_location_is_the_one_pyproject_names() -> None:
    import tomllib

    pyproject = tomllib.loads((REPO_DOCS.parent / "pyproject.toml").read_text())
    assert pyproject["tool"]["setuptools"]["data-files"] == {"share/doc/mullama": ["docs/*.md"]}
    assert any(str(d).endswith("share/doc/mullama") for d in docs.docs_dirs())
