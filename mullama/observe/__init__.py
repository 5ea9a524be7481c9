"""Observability: events and their fan-out (``events.py``), user hooks (``hooks.py``), Prometheus
metrics (``metrics.py``) and the X-Profile of a request (``profiles.py``).

``from mullama.observe import Observer`` is the documented import (docs/observability.md).
"""

from mullama.observe.events import Observer

__all__ = ["Observer"]
