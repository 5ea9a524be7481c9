"""The presets a server offers (docs/presets.md): those of the settings (``[presets.NAME]``) and those made
over the API (``/api/create``, ``mullama create``), which live one JSON file each under
``<first models dir>/.presets/`` (hidden: the catalog skips it) so that they survive a restart.

A name is looked up case-insensitively, with Ollama's ``:latest`` implied. A preset made from another
preset is stored flat (``config.presets.inherit``), so deleting the parent leaves it whole; a preset of
the settings may name another one of either kind, and is flattened when it is looked up. The folder is
read again after each save or delete, and whenever its mtime changes (a file put there by hand); an
unreadable file is skipped and reported in ``problems``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import msgspec

from mullama.config.presets import PresetSettings, inherit, preset_key
from mullama.core.errors import InvalidArgument, PresetConflict
from mullama.models.manifest import now_iso, read_bounded, write_json
from mullama.models.names import manifest_key

PRESET_DIR = ".presets"
MAX_PRESET_BYTES = 1 << 20
RECHECK_S = 1.0  # how long the folder is taken as unchanged (a request looks presets up several times)


class PresetFile(msgspec.Struct, frozen=True, kw_only=True):
    """One created preset on disk."""

    name: str
    preset: PresetSettings
    created_at: str = ""  # ISO 8601, UTC
    schema: int = 1


_decoder = msgspec.json.Decoder(PresetFile)


@dataclass(frozen=True)
class Preset:
    """A preset as served: its name, its settings (flat: ``from`` is never another preset) and origin."""

    name: str
    settings: PresetSettings
    source: Literal["config", "created"]
    modified: float  # the file's mtime; for one of the settings, when the server started
    path: Path | None = None  # the file of a created preset

    @property
    def digest(self) -> str:
        """Ollama's ``digest`` of a preset: the sha256 of its settings as JSON."""
        return hashlib.sha256(msgspec.json.encode(self.settings)).hexdigest()

    def describe(self) -> dict[str, Any]:
        """The JSON-able preset for ``/api/models`` and ``mullama show``."""
        return {"source": self.source, **msgspec.to_builtins(self.settings)}


class Presets:
    """The presets of the settings and of ``folder`` (None: no models dir, so none can be created)."""

    def __init__(self, configured: Mapping[str, PresetSettings], folder: Path | None) -> None:
        started = time.time()
        self._configured = {preset_key(n): Preset(preset_key(n), p, "config", started) for n, p in configured.items()}
        self.folder = folder
        self.problems: list[str] = []
        self._created: dict[str, Preset] = {}
        self._seen: int | None = None
        self._fresh_until = 0.0  # monotonic time before which the folder is not looked at again

    def _files(self) -> dict[str, Preset]:
        """The created presets, read again when the folder changed (looked at once a second at most; a
        preset saved or removed here is seen at once)."""
        now = time.monotonic()
        if now < self._fresh_until:
            return self._created
        self._fresh_until = now + RECHECK_S
        try:
            mtime = self.folder.stat().st_mtime_ns if self.folder else None
        except OSError:
            mtime = None
        if mtime != self._seen:
            self._seen, self.problems, self._created = mtime, [], {}
            for path in sorted(self.folder.glob("*.json")) if mtime is not None and self.folder else ():
                try:
                    found = _decoder.decode(read_bounded(path, MAX_PRESET_BYTES))
                    key = preset_key(found.name)
                    self._created[key] = Preset(key, found.preset, "created", path.stat().st_mtime, path)
                except (OSError, ValueError, msgspec.DecodeError, msgspec.ValidationError) as exc:
                    self.problems.append(f"preset file {path} skipped: {exc}")
        return self._created

    def _raw(self, name: object) -> Preset | None:
        if not isinstance(name, str) or not name.strip():
            return None
        key = preset_key(name)
        return self._configured.get(key) or self._files().get(key)

    def get(self, name: object) -> Preset | None:
        """The preset called ``name`` with its bases' fields filled in; None when no preset has that name."""
        preset = self._raw(name)
        if preset is None:
            return None
        settings, seen = preset.settings, {preset.name}
        while (parent := self._raw(settings.from_)) is not None and parent.name not in seen:
            seen.add(parent.name)
            settings = inherit(parent.settings, settings)
        return dataclasses.replace(preset, settings=settings)

    def all(self) -> list[Preset]:
        """Every preset by name (one of the settings hides a created one of the same name)."""
        names = sorted({*self._configured, *self._files()})
        return [p for p in map(self.get, names) if p is not None]

    def flat(self, settings: PresetSettings) -> PresetSettings:
        """``settings`` with the fields of the preset its ``from`` names (if it names one): how a preset made
        from another is stored, so that it stays whole when the other changes or goes (as in Ollama)."""
        parent = self.get(settings.from_)
        return settings if parent is None else inherit(parent.settings, settings)

    def save(self, name: str, settings: PresetSettings) -> Preset:
        """Create or replace the preset ``name`` (``settings`` flat); PresetConflict for one of the settings."""
        key = preset_key(name)
        if key in self._configured:
            raise PresetConflict(f"preset {key!r} is defined in the config file; change it there", param="model")
        if self.folder is None:
            raise InvalidArgument("no models directory is configured (models_dirs): there is nowhere to keep "
                                  "a created preset", param="model")
        old = self._files().get(key)
        path = old.path if old is not None and old.path else self.folder / f"{manifest_key(key)}.json"
        write_json(path, PresetFile(name=key, preset=settings, created_at=now_iso()))
        self._seen, self._fresh_until = None, 0.0  # read again: the mtime may not have moved within its tick
        return Preset(key, settings, "created", path.stat().st_mtime, path)

    def remove(self, name: str) -> Preset | None:
        """Delete the created preset ``name`` (None: no preset has that name); PresetConflict for one of the
        settings."""
        preset = self._raw(name)
        if preset is not None and preset.source == "config":
            raise PresetConflict(f"preset {preset.name!r} is defined in the config file; remove it there",
                                 param="model")
        if preset is not None and preset.path is not None:
            preset.path.unlink(missing_ok=True)
            self._seen, self._fresh_until = None, 0.0
        return preset
