"""The `hooks` setting: setup functions imported by path and called with the registry at start."""

from __future__ import annotations

import sys

from mullama.observe.hooks import install_hooks
from mullama.observe.events import Observer


async def test_a_setup_function_registers_callbacks_and_receives_events(tmp_path, monkeypatch):
    (tmp_path / "myhooks.py").write_text(
        "seen = []\n"
        "def setup(hooks):\n"
        "    hooks.register('runner_crashed', lambda record: seen.append(record['model']))\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    observer = Observer()
    await observer.start()
    install_hooks("myhooks:setup", observer.hooks)
    observer.emit("runner_crashed", model="m1", code=-9)
    await observer.stop()
    assert sys.modules["myhooks"].seen == ["m1"]


async def test_a_broken_hook_module_is_reported_and_skipped(tmp_path, monkeypatch):
    (tmp_path / "badhooks.py").write_text("def setup(hooks):\n    raise RuntimeError('boom')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    observer = Observer()
    for spec in ("badhooks:setup", "no_such_module_x:setup", "badhooks:missing"):
        install_hooks(spec, observer.hooks)  # logs, never raises
