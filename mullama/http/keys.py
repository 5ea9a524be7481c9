"""The typed keys under which the composition root (``app.py``) hands services to the route modules."""

from __future__ import annotations

from aiohttp import web

from mullama.http.connections import Guard
from mullama.serving.supervisor import Supervisor
from mullama.store.store import Store

SUPERVISOR = web.AppKey("supervisor", Supervisor)
STORE = web.AppKey("store", Store)
CONNECTIONS = web.AppKey("connections", Guard)  # set by serve(); absent under a test client
