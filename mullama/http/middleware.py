"""The middlewares every request passes: errors mapped to responses in one place, and API keys.

``browser_guard`` refuses what a web page on another site could send to a local server: a foreign
``Host`` (DNS rebinding), a foreign ``Origin``, and bodies not declared as JSON (a cross-site form or
``text/plain`` POST needs no preflight). A ``MullamaError`` carries its status, type, ``param`` and
``retry_after``; aiohttp's own HTTP errors
get a type by status (``shapes.HTTP_TYPES``); anything else is a 500 that is logged and never takes the
server down. The shape is the API's own: Ollama's ``{"error": "..."}`` on the Ollama routes (the paths
their route tables declare), Anthropic's ``{"type": "error", "error": {...}}`` on the Anthropic ones,
OpenAI's everywhere else.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import ipaddress
from collections.abc import Iterable
from urllib.parse import urlsplit

import structlog
from aiohttp import web

from mullama.config import Settings, is_loopback
from mullama.core import errors
from mullama.http import ui
from mullama.http.anthropic import format as anthropic
from mullama.http.ollama import format as ollama
from mullama.http.openai import format as openai
from mullama.http.shapes import HTTP_TYPES, openai_kind

log = structlog.get_logger("mullama.api")

OPEN_PATHS = frozenset({"/health"})


def error_response(request: web.Request, status: int, type_: str, message: str, param: str | None,
                   ollama_paths: frozenset[str], anthropic_paths: frozenset[str] = frozenset()) -> web.Response:
    """The error in the shape of the API the route belongs to."""
    if request.path in ollama_paths:
        return web.Response(body=ollama.error_body(message), status=status, content_type="application/json")
    if request.path in anthropic_paths:
        return web.Response(body=anthropic.error_body(message, status), status=status,
                            content_type="application/json")
    kind, code = openai_kind(status, type_)
    return web.Response(body=openai.error_body(message, kind, param=param, code=code), status=status,
                        content_type="application/json")


def error_middleware(ollama_paths: Iterable[str], anthropic_paths: Iterable[str] = ()):
    """Errors -> responses; ``ollama_paths`` answer in Ollama's shape, ``anthropic_paths`` in Anthropic's."""
    paths, anthropic_shaped = frozenset(ollama_paths), frozenset(anthropic_paths)

    @web.middleware
    async def handle_errors(request: web.Request, handler):
        try:
            return await handler(request)
        except errors.MullamaError as exc:
            if exc.status >= 500:
                log.warning("request_failed", path=request.path, status=exc.status, type=exc.type, error=str(exc))
            resp = error_response(request, exc.status, exc.type, str(exc), exc.param, paths, anthropic_shaped)
            if exc.retry_after:
                resp.headers["Retry-After"] = str(exc.retry_after)
            return resp
        except web.HTTPException as exc:
            if exc.status < 400:
                raise
            message = exc.text if exc.status != 413 else f"request body too large: {exc.text}"
            return error_response(request, exc.status, HTTP_TYPES.get(exc.status, "invalid_request_error"),
                                  message or exc.reason, None, paths, anthropic_shaped)
        except (ConnectionResetError, TimeoutError):
            raise
        except Exception as exc:  # a bug: say so, keep serving
            log.exception("unhandled", path=request.path)
            return error_response(request, 500, "server_error", f"internal error: {type(exc).__name__}", None,
                                  paths, anthropic_shaped)

    return handle_errors


def given_key(request: web.Request) -> str:
    """The API key the client sent: ``Authorization: Bearer <key>``, else ``X-Api-Key``."""
    auth = request.headers.get("Authorization", "")
    return auth[7:].strip() if auth[:7].lower() == "bearer " else request.headers.get("X-Api-Key", "")


def auth_middleware(keys: tuple[str, ...]):
    encoded = [k.encode() for k in keys]

    @web.middleware
    async def check(request: web.Request, handler):
        if request.path not in OPEN_PATHS and not ui.is_ui_path(request.path):
            given = given_key(request)
            # compare against every key, always: the time taken says nothing about which one matched
            ok = False
            for key in encoded:
                ok |= hmac.compare_digest(given.encode("utf-8", "surrogateescape"), key)
            if not ok:
                raise errors.Unauthorized("missing or invalid API key (send 'Authorization: Bearer <key>' "
                                          "or 'X-Api-Key: <key>')")
        return await handler(request)

    return check


_BODY_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def host_name(host: str) -> str:
    """The name part of a ``Host`` header: ``[::1]:8080`` -> ``::1``, ``Localhost.:80`` -> ``localhost``."""
    host = host.strip().lower()
    if host.startswith("["):
        return host[1:host.find("]")] if "]" in host else host[1:]
    if host.count(":") == 1:
        host = host.split(":", 1)[0]
    return host.rstrip(".")


def _loopback_name(name: str) -> bool:
    if name == "localhost" or name.endswith(".localhost"):  # RFC 6761: always the loopback
        return True
    try:
        address = ipaddress.ip_address(name)
    except ValueError:
        return False
    return is_loopback(str(address))


def _json_type(content_type: str) -> bool:
    mime = content_type.split(";", 1)[0].strip().lower()
    return mime == "application/json" or (mime.startswith("application/") and mime.endswith("+json"))


def browser_guard(settings: Settings):
    """403 for a foreign ``Host`` or ``Origin``; 415 for a body that is not declared JSON."""
    bound_to_loopback = is_loopback(settings.host)
    hosts = frozenset(host_name(h) for h in settings.allowed_hosts)
    if not bound_to_loopback and hosts:
        hosts |= {host_name(settings.host)}
    origins = frozenset(o.strip().rstrip("/").lower() for o in settings.origins)
    any_origin = "*" in origins

    @functools.lru_cache(maxsize=256)  # clients send the same few Host headers: parse each once
    def host_ok(host: str) -> bool:
        name = host_name(host)
        return _loopback_name(name) or name in hosts

    def same_origin(origin: str, host: str | None) -> bool:
        try:
            parts = urlsplit(origin)
        except ValueError:  # "http://[::1" and the like: no origin of ours
            return False
        return host is not None and parts.scheme in ("http", "https") and parts.netloc == host.strip().lower()

    @web.middleware
    async def guard(request: web.Request, handler):
        host = request.headers.get("Host")
        if host is not None and (bound_to_loopback or hosts) and not host_ok(host):
            raise errors.Forbidden(f"host {host[:100]!r} is not served here (add it to allowed_hosts to serve "
                                   "it)", "host_not_allowed")
        origin = request.headers.get("Origin")
        if origin is not None and not any_origin:
            normal = origin.strip().rstrip("/").lower()
            if normal not in origins and not same_origin(normal, host):
                raise errors.Forbidden(f"origin {origin[:100]!r} is not allowed (add it to origins to allow it)",
                                       "origin_not_allowed")
        if request.method in _BODY_METHODS and request.body_exists:
            declared = request.headers.get("Content-Type", "")
            if not _json_type(declared):
                raise errors.UnsupportedMediaType(
                    f"send the body as JSON with 'Content-Type: application/json' (got {declared[:100]!r})"
                    if declared else "send the body as JSON with 'Content-Type: application/json'")
        return await handler(request)

    return guard


def middlewares(settings: Settings, ollama_paths: Iterable[str], anthropic_paths: Iterable[str] = ()) -> list:
    chain = [error_middleware(ollama_paths, anthropic_paths), browser_guard(settings), ui.browser_root]
    if settings.api_keys:
        chain.append(auth_middleware(settings.api_keys))
    return chain


def user_key(request: web.Request, user: str | None, api_keys: tuple[str, ...]) -> str:
    """The fairness key: the API key's fingerprint, else the request's ``user`` field, else the client address."""
    key = given_key(request)
    if key and api_keys:
        return "key:" + hashlib.sha256(key.encode()).hexdigest()[:8]
    if user:
        return "user:" + user
    return "addr:" + (request.remote or "?")

