"""The web dashboard: static ES modules and styles under ``static/``, served at ``/ui/`` by ``http.ui``.

No build step: the files here are what the browser runs. ``static/vendor/uplot`` is uPlot (MIT), the
time-series chart library, as published on npm. docs/dashboard.md maps views to files and API routes.
"""

from pathlib import Path

STATIC = Path(__file__).resolve().parent / "static"
