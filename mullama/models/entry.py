"""One model of the catalog: a GGUF file (or the parts of a split one) with its name and header."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from mullama.models.gguf_header import GgufHeader, parameters_label
from mullama.models.manifest import Manifest


@dataclass(frozen=True)
class ModelEntry:
    """One servable (or listed-but-broken) model: a file, or the parts of a split file."""

    name: str  # "family:variant", lowercase
    family: str
    variant: str
    path: Path  # first (or only) file
    parts: tuple[Path, ...]
    size_bytes: int  # all parts
    modified: float  # mtime of the first file
    id: str  # 12 hex chars of sha256(resolved path, size, mtime), like ollama's ID column
    header: GgufHeader | None
    error: str | None  # why it cannot be served
    source: str  # "models_dir" | "bundled" | "config"
    origin: Manifest | None = None  # the pull manifest naming this file, if it was pulled

    def describe(self) -> dict[str, object]:
        """A JSON-able summary for ``/api/tags``, ``mullama list`` and ``mullama show``."""
        out: dict[str, object] = {
            "name": self.name, "family": self.family, "variant": self.variant, "id": self.id,
            "path": str(self.path), "parts": [str(p) for p in self.parts], "size": self.size_bytes,
            "modified": self.modified, "source": self.source, "error": self.error,
        }
        if self.origin is not None:
            out["origin"] = self.origin.describe()
        h = self.header
        if h is not None:
            out.update(
                architecture=h.architecture, parameters=h.parameters,
                parameters_label=parameters_label(h.parameters), quantization=h.quantization,
                context_length=h.context_length, n_layer=h.n_layer, n_embd=h.n_embd, n_head=h.n_head,
                n_head_kv=h.n_head_kv, has_chat_template=h.has_chat_template,
            )
        return out

