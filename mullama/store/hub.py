"""A Hugging Face hub, as the store sees it: a repository's files (size, sha256) at a commit, file URLs
and request headers -- all through ``huggingface_hub`` (``HfApi.model_info(files_metadata=True)``,
``hf_hub_url``, ``build_hf_headers``), with its errors turned into typed ``PullError`` s.

The endpoint and token are explicit (``Hub(endpoint, token)``); ``from_env`` reads ``HF_ENDPOINT``
and ``HF_TOKEN`` when the hub is made, not when huggingface_hub was imported, so tests and servers
can point a store at another hub. The byte transfer itself is ``download.py`` (why: see there).
"""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass

from mullama.core.errors import HubUnavailable, PullError, PullForbidden, PullNotFound, PullUnauthorized
from mullama.models.names import RemoteFile

__all__ = ["DEFAULT_ENDPOINT", "Hub", "Listing"]

DEFAULT_ENDPOINT = "https://huggingface.co"
TIMEOUT_S = 30.0
_TOKEN_HINT = "set HF_TOKEN to a Hugging Face access token that can read it"


@dataclass(frozen=True)
class Listing:
    repo: str                       # as the hub spells it
    commit: str
    files: tuple[RemoteFile, ...]


class Hub:
    def __init__(self, endpoint: str | None = None, token: str | None = None) -> None:
        self.endpoint = (endpoint or DEFAULT_ENDPOINT).rstrip("/")
        self.token = token or None

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> Hub:
        real, env = env is None, dict(os.environ) if env is None else env
        token = env.get("HF_TOKEN") or env.get("HUGGING_FACE_HUB_TOKEN") or None
        if token is None and real:
            token = _stored_token()
        return cls(env.get("HF_ENDPOINT") or None, token)

    def headers(self) -> dict[str, str]:
        from huggingface_hub.utils import build_hf_headers

        from mullama import __version__

        h = build_hf_headers(token=self.token or False, library_name="mullama", library_version=__version__)
        h["Accept-Encoding"] = "identity"  # the bytes as published: sizes and hashes must match
        return h

    def file_url(self, repo: str, commit: str, path: str) -> str:
        from huggingface_hub import hf_hub_url

        return hf_hub_url(repo, path, revision=commit, endpoint=self.endpoint)

    async def listing(self, repo: str, revision: str = "main") -> Listing:
        """The repository's files with sizes and sha256 at ``revision``; typed errors for every failure."""
        return await asyncio.to_thread(self._listing, repo, revision)

    def _listing(self, repo: str, revision: str) -> Listing:
        from huggingface_hub import HfApi

        api = HfApi(endpoint=self.endpoint, token=self.token or False, library_name="mullama")
        try:
            info = api.model_info(repo, revision=None if revision == "main" else revision,
                                  files_metadata=True, timeout=TIMEOUT_S)
        except Exception as exc:  # noqa: BLE001 (every huggingface_hub / httpx failure becomes a typed error)
            raise self.error(exc, f"repository {repo!r}") from None
        files = tuple(RemoteFile(path=s.rfilename, size=int(s.lfs.size if s.lfs else (s.size or 0)),
                                 sha256=(s.lfs.sha256.lower() if s.lfs and s.lfs.sha256 else None))
                      for s in info.siblings or ())
        if not info.sha:
            raise HubUnavailable(f"the hub at {self.endpoint} did not say which commit {repo!r} is at")
        return Listing(repo=info.id or repo, commit=info.sha, files=files)

    def error(self, exc: BaseException, what: str) -> PullError:
        """huggingface_hub / network exception -> typed PullError with a clear sentence."""
        from huggingface_hub import errors as hf

        status = getattr(getattr(exc, "response", None), "status_code", None)
        where = f"on {self.endpoint}"
        if isinstance(exc, hf.GatedRepoError) or status == 403:
            return PullForbidden(f"{what} {where} is gated or forbidden: accept its terms on the hub page "
                                 f"and {_TOKEN_HINT}")
        if status == 401:
            if self.token:
                return PullUnauthorized(f"the hub {self.endpoint} refused the token for {what} (HTTP 401): "
                                        f"check HF_TOKEN; if the repository is private, {_TOKEN_HINT}")
            return PullUnauthorized(f"{what} {where} needs authentication (HTTP 401): {_TOKEN_HINT}")
        if isinstance(exc, hf.RevisionNotFoundError):
            return PullNotFound(f"{what}: revision not found {where}")
        if isinstance(exc, (hf.RepositoryNotFoundError, hf.RemoteEntryNotFoundError)) or status == 404:
            return PullNotFound(f"{what} not found {where} (check the name; if it is private or gated, "
                                f"{_TOKEN_HINT})")
        if status is not None and status >= 500:
            return HubUnavailable(f"the hub {self.endpoint} failed on {what} (HTTP {status}); "
                                  "try again later")
        if status is not None:
            return PullError(f"the hub {self.endpoint} answered HTTP {status} for {what}")
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        return HubUnavailable(f"cannot reach the hub at {self.endpoint} ({reason})")


def _stored_token() -> str | None:
    """The token ``hf auth login`` stored, if any (huggingface_hub reads the token file)."""
    try:
        from huggingface_hub import get_token

        return get_token()
    except Exception:  # noqa: BLE001 (no token file, unreadable: pull anonymously)
        return None
