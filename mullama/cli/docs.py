"""``mullama docs [PAGE]``: the documentation pages, from any install.

A source checkout reads ``docs/`` next to the package; a wheel installs the same pages under
``<prefix>/share/doc/mullama`` (pyproject's data-files). The CLI's help and the API's
descriptions name pages as ``docs/NAME.md``: ``mullama docs NAME`` shows that page.
"""

from __future__ import annotations

import argparse
import difflib
import os
import sys
import sysconfig
from pathlib import Path

from mullama.core.errors import InvalidArgument, MullamaError


def add_docs(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("docs", help="show a documentation page (docs/NAME.md) or list them",
                       description="Without PAGE: list the pages and where they are. With PAGE: show it "
                       "(rendered on a terminal, as markdown otherwise).")
    p.add_argument("page", nargs="?", metavar="PAGE", help="a page name, e.g. configuration or docs/presets.md")
    p.add_argument("--path", action="store_true", help="print the page's file path instead of the page")
    p.set_defaults(func=_cmd_docs)


def docs_dirs() -> list[Path]:
    """Where the pages may be, in order: a source checkout's docs/, then the installed copy."""
    package = Path(__file__).resolve().parents[1]
    prefixes = dict.fromkeys([sysconfig.get_path("data"), sys.prefix, sysconfig.get_path("data", f"{os.name}_user")])
    return [package.parent / "docs", *(Path(p) / "share" / "doc" / "mullama" for p in prefixes if p)]


def find_docs() -> Path:
    for d in docs_dirs():
        if (d / "architecture.md").is_file():
            return d
    raise MullamaError("the documentation pages are not installed here (looked in: "
                       + ", ".join(str(d) for d in docs_dirs()) + ")")


def page_path(name: str) -> Path:
    root = find_docs()
    stem = Path(name).name.removesuffix(".md")
    path = root / f"{stem}.md"
    if path.is_file():
        return path
    pages = sorted(p.stem for p in root.glob("*.md"))
    close = difflib.get_close_matches(stem, pages, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    raise InvalidArgument(f"no page {stem!r}{hint} (pages: {', '.join(pages)})")


def _title(path: Path) -> str:
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("#"):
            return line.lstrip("#").strip()
    return ""


def _cmd_docs(args: argparse.Namespace) -> int:
    if args.page is None:
        root = find_docs()
        print(f"mullama's documentation ({root}); `mullama docs NAME` shows one:")
        for path in sorted(root.glob("*.md")):
            print(f"  {path.stem:<18} {_title(path)}")
        return 0
    path = page_path(args.page)
    if args.path:
        print(path)
        return 0
    text = path.read_text(encoding="utf-8")
    if not sys.stdout.isatty():
        sys.stdout.write(text)
        return 0
    from rich.console import Console
    from rich.markdown import Markdown

    console = Console()
    with console.pager(styles=True):
        console.print(Markdown(text))
    return 0
