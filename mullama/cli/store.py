"""``mullama pull`` and ``mullama rm``.

``pull`` runs in this process (no server needed): the store downloads into the first models
directory, with a rich progress bar per file (bytes, speed, time left) on a terminal and a few plain
lines otherwise. Ctrl-C stops it cleanly; the partial file stays and the same command resumes it.

``rm`` asks a running server (``MULLAMA_HOST``) first, so that a loaded model is refused (or, with
``--force``, unloaded first); with no server answering it works on the files directly.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from typing import Self

__all__ = ["add_pull", "add_rm", "pull_model", "run_pull", "run_rm"]

Subparsers = argparse._SubParsersAction  # argparse has no public name for it


def _settings(args: argparse.Namespace):
    from mullama import config

    flags = {"models_dirs": getattr(args, "models_dirs", None)}
    return config.load_settings(flags, config_path=getattr(args, "config", None))


# ---------------------------------------------------------------------- pull


def add_pull(sub: Subparsers) -> None:
    p = sub.add_parser(
        "pull", help="download a GGUF model from Hugging Face",
        description="Download the GGUF file(s) of a Hugging Face repository into the first models directory: "
                    "ORG/REPO picks the usual default quantisation (Q4_K_M first), ORG/REPO:QUANT a given "
                    "one. Resumes an interrupted download, verifies sha256. HF_ENDPOINT and HF_TOKEN are "
                    "honoured.")
    p.add_argument("model", metavar="ORG/REPO[:QUANT]")
    p.add_argument("--models-dir", dest="models_dirs", action="append", metavar="DIR",
                   help="download into DIR (default: the first models_dirs entry of the settings)")
    p.add_argument("--config", metavar="FILE", help="TOML settings file")
    p.set_defaults(func=run_pull)


class _Display:
    """Progress objects -> a rich progress bar per file (terminal) or a few plain lines (pipe, log)."""

    def __init__(self, stream=None) -> None:
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self.progress = None
        self.tasks: dict[str, Any] = {}
        self._last_line: dict[str, tuple[float, int]] = {}

    def __enter__(self) -> Self:
        if self.tty:
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                DownloadColumn,
                Progress,
                TextColumn,
                TimeRemainingColumn,
                TransferSpeedColumn,
            )

            self.progress = Progress(TextColumn("{task.description}"), BarColumn(),
                                     DownloadColumn(binary_units=True), TransferSpeedColumn(),
                                     TimeRemainingColumn(),
                                     console=Console(file=self.stream), refresh_per_second=8, transient=False)
            self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.progress is not None:
            self.progress.stop()

    def say(self, text: str) -> None:
        if self.progress is not None:
            self.progress.console.print(text, highlight=False, markup=False)
        else:
            print(text, file=self.stream, flush=True)

    def __call__(self, obj: dict[str, Any]) -> None:
        status = str(obj.get("status", ""))
        total, done = obj.get("total"), obj.get("completed")
        if total is None:
            if status != "success":
                self.say(status)
            return
        key = str(obj.get("digest") or status)
        label = f"{status} ({obj.get('file', '')})" if obj.get("file") else status
        if self.progress is not None:
            if key not in self.tasks:
                self.tasks[key] = self.progress.add_task(label, total=total)
            self.progress.update(self.tasks[key], completed=done, total=total)
            return
        from mullama.core.units import format_size

        now = time.monotonic()
        last_t, last_pct = self._last_line.get(key, (0.0, -100))
        pct = int(done * 100 / total) if total else 100
        if pct == 100 and last_pct == 100:
            return
        if pct == 100 or pct - last_pct >= 10 or now - last_t >= 5:
            self._last_line[key] = (now, pct)
            self.say(f"{label}: {pct}% ({format_size(done)} / {format_size(total)})")


def pull_model(settings, name: str, *, stream=None) -> tuple[Any, str]:
    """Pull ``name`` into ``settings.models_dirs[0]`` with the progress display; (manifest, catalog name)."""
    from mullama.models.catalog import Catalog
    from mullama.store.store import Store

    async def go():
        store = Store(settings.models_dirs)
        try:
            with _Display(stream) as display:
                return await store.pull(name, display)
        finally:
            await store.close()

    manifest = asyncio.run(go())
    served = Catalog.scan(settings.models_dirs).resolve(manifest.name).name
    return manifest, served


def run_pull(args: argparse.Namespace) -> int:
    from mullama.core import logs

    settings = _settings(args)
    logs.configure("warning")
    try:
        manifest, served = pull_model(settings, args.model)
    except KeyboardInterrupt:
        print("\nmullama: pull cancelled; the partial download is kept: run the same command to resume it",
              file=sys.stderr)
        return 130
    print(f"pulled {manifest.name} ({manifest.repo}@{(manifest.commit or '')[:12]}); serve it as {served} or "
          f"{manifest.name}")
    return 0


# ---------------------------------------------------------------------- rm


def add_rm(sub: Subparsers) -> None:
    p = sub.add_parser(
        "rm", help="delete a model",
        description="Delete MODEL (a pulled name, a catalog name or a file stem): its manifest and, once no "
                    "other name uses them, its files. A running server is asked first: a loaded model is "
                    "refused unless --force, which unloads it first. With no server answering, the files are "
                    "deleted directly.")
    p.add_argument("model", metavar="MODEL")
    p.add_argument("--force", action="store_true", help="unload the model first if it is loaded")
    p.add_argument("--models-dir", dest="models_dirs", action="append", metavar="DIR",
                   help="models directory (when no server answers; default: the settings')")
    p.add_argument("--config", metavar="FILE", help="TOML settings file")
    p.set_defaults(func=run_rm)


def run_rm(args: argparse.Namespace) -> int:
    from mullama.cli.client import ClientError, client_for

    try:
        answer = client_for(args).call("DELETE", "/api/delete", {"model": args.model, "force": args.force})
    except ClientError as exc:
        if not str(exc).startswith("cannot reach the server"):
            print(f"mullama: {exc}", file=sys.stderr)
            return 1
        if os.environ.get("MULLAMA_HOST") or getattr(args, "host", None):
            print(f"mullama: {exc}; deleting the files directly", file=sys.stderr)
        answer = _rm_files(args)
    served = answer.get("model")
    print(f"deleted '{args.model}'" + (f" ({served})" if served not in (None, args.model) else ""))
    return 0


def _rm_files(args: argparse.Namespace) -> dict[str, Any]:
    from mullama.models.catalog import Catalog
    from mullama.store.hub import Hub
    from mullama.store.store import Store

    settings = _settings(args)
    store = Store(settings.models_dirs, Hub())
    return store.remove(Catalog.scan(store.dirs), args.model)

