"""What a quantisation costs in quality: perplexity over a text, and KL divergence and top-1 agreement
against a reference model's token distributions.

Computed as llama.cpp's perplexity tool does (``tools/perplexity/perplexity.cpp``), so the numbers
compare: the text is tokenised once (with BOS when the vocabulary adds one), cut into chunks of
``n_ctx`` tokens whose first token becomes BOS, and only the second half of each chunk is scored (each
scored token sees at least ``n_ctx / 2`` tokens before it). Pure numpy over logits; the engine calls that
produce them are in ``cli/evaluate.py``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

#: Texts that ship with the package (their source: texts/README.md).
TEXTS = Path(__file__).resolve().parent / "texts"


def text_path(name: str) -> Path:
    p = Path(name).expanduser()
    if p.exists() or "/" in name:
        return p
    return TEXTS / (name if name.endswith(".txt") else f"{name}.txt")


def chunks(tokens: list[int], n_ctx: int, limit: int | None, bos: int | None) -> list[list[int]]:
    """Whole chunks of ``n_ctx`` tokens (a partial last one is dropped), the first token of each BOS."""
    if n_ctx < 4:
        raise ValueError("n_ctx must be at least 4")
    n = len(tokens) // n_ctx
    if limit is not None:
        n = min(n, limit)
    out = []
    for i in range(n):
        c = list(tokens[i * n_ctx:(i + 1) * n_ctx])
        if bos is not None:
            c[0] = bos
        out.append(c)
    return out


def scored(n_ctx: int) -> range:
    """The positions whose logits are scored (each predicts the token after it)."""
    return range(n_ctx // 2, n_ctx - 1)


def log_softmax(logits: np.ndarray) -> np.ndarray:
    x = logits.astype(np.float64)
    x -= x.max(axis=-1, keepdims=True)
    return x - np.log(np.exp(x).sum(axis=-1, keepdims=True))


@dataclass
class Score:
    """Running sums over the scored tokens of one model (and its comparison with the reference)."""

    nll: list[float] = field(default_factory=list)
    kld: list[float] = field(default_factory=list)
    same_top1: int = 0

    def add(self, logp: np.ndarray, targets: np.ndarray, ref_logp: np.ndarray | None = None) -> None:
        self.nll.extend((-logp[np.arange(len(targets)), targets]).tolist())
        if ref_logp is not None:
            self.kld.extend((np.exp(ref_logp) * (ref_logp - logp)).sum(axis=1).tolist())
            self.same_top1 += int((ref_logp.argmax(axis=1) == logp.argmax(axis=1)).sum())

    def result(self) -> dict:
        n = len(self.nll)
        if n == 0:
            return {"tokens": 0}
        nll = np.asarray(self.nll)
        mean = float(nll.mean())
        ppl = math.exp(mean)
        # llama.cpp's uncertainty: the standard error of the mean NLL, carried through exp
        err = ppl * float(nll.std(ddof=1) / math.sqrt(n)) if n > 1 else 0.0
        out = {"tokens": n, "ppl": ppl, "ppl_err": err, "mean_nll": mean}
        if self.kld:
            k = np.asarray(self.kld)
            out.update(kld=float(k.mean()), kld_err=float(k.std(ddof=1) / math.sqrt(n)) if n > 1 else 0.0,
                       kld_p99=float(np.percentile(k, 99)), top1=self.same_top1 / n)
        return out
