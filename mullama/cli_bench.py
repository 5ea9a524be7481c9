"""`mullama bench`. Filled in by issue 6."""

from __future__ import annotations

import argparse


def add_bench(sub: argparse._SubParsersAction) -> None:
    pass
