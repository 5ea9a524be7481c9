"""`mullama pull` and `mullama rm`. Filled in by issue 7."""

from __future__ import annotations

import argparse


def add_pull(sub: argparse._SubParsersAction) -> None:
    pass


def add_rm(sub: argparse._SubParsersAction) -> None:
    pass
