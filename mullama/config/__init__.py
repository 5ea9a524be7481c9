"""The settings: one typed, frozen schema (``schema.py``) read once from its sources (``sources.py``); a
model's effective settings resolved by ``resolve.py``, its sampling defaults typed in ``sampling.py``.

Import from here: ``from mullama.config import Settings, load_settings, model_settings``.
"""

from mullama.config.network import is_loopback
from mullama.config.resolve import RunnerConfig, model_settings
from mullama.config.schema import (
    CACHE_TYPES,
    SETTING_NAMES,
    ModelSettings,
    Settings,
    load_settings,
)

__all__ = ["CACHE_TYPES", "SETTING_NAMES", "ModelSettings", "RunnerConfig", "Settings", "is_loopback",
           "load_settings", "model_settings"]
