"""Tensor buffer overrides (llama-server's ``-ot REGEX=DEVICE``, ``--cpu-moe``, ``--n-cpu-moe N``): checks
and the one list the runner hands to llama.cpp. Pure.

llama.cpp (``llama_model_loader::create_tensor`` in the vendored tree) tries the overrides in order
for every weight: the first whose REGEX ``std::regex_search``-es the tensor's name (ECMAScript
syntax) sends the weight to DEVICE's buffer type, whatever the layer's own device. llama-server
splits ``-ot`` at the *first* ``=``, so a REGEX cannot contain one. DEVICE is a buffer type's name
(``CPU``, ``CUDA0``, ``CUDA_Host``, ``Metal``, ``Vulkan1``, ``RPC[host:port]`` ...); only its shape is
checked here, since the devices are the runner's to know (it refuses an unknown one, naming the known).

``--cpu-moe`` and ``--n-cpu-moe N`` are shorthands for CPU overrides with llama.cpp's own patterns
(``common/common.h``: ``LLM_FFN_EXPS_REGEX``, ``llm_ffn_block_regex``), which ``expand_overrides``
writes out after the explicit ones, so an explicit override of an expert tensor wins.
"""

from __future__ import annotations

import re
from typing import Any

from mullama.core.errors import ConfigError

#: ``LLM_FFN_EXPS_REGEX``: every MoE expert tensor (``--cpu-moe``)
FFN_EXPS_REGEX = r"\.ffn_(up|down|gate|gate_up)_(ch|)exps"
#: the buffer type ``ggml_backend_cpu_buffer_type()`` is called
CPU = "CPU"
#: ``llama_max_tensor_buft_overrides()``, less the terminating entry
MAX_OVERRIDES = 4095

_DEVICE = re.compile(r"[A-Za-z][A-Za-z0-9_.:\[\]-]{0,63}")


def block_exps_regex(layer: int) -> str:
    """``llm_ffn_block_regex(layer, LLM_FFN_EXPS_REGEX)``: the expert tensors of one layer (``--n-cpu-moe``)."""
    return rf"blk\.{layer}{FFN_EXPS_REGEX}"


def split_override(entry: str) -> tuple[str, str]:
    """``"REGEX=DEVICE"`` -> (REGEX, DEVICE), split at the first ``=`` as llama-server does."""
    pattern, eq, device = entry.partition("=")
    if not eq:
        raise ValueError("expected REGEX=DEVICE, e.g. \"\\.ffn_.*_exps\\.=CPU\"")
    return pattern, device


def check_override(entry: str) -> None:
    """Raise ValueError (the reason) unless ``entry`` is a REGEX=DEVICE llama.cpp can take."""
    pattern, device = split_override(entry)
    if not pattern:
        raise ValueError("the REGEX is empty (use '.' to match every tensor)")
    if "=" in device:
        raise ValueError("a REGEX cannot contain '=' (llama.cpp splits REGEX=DEVICE at the first '=')")
    try:
        re.compile(pattern)
    except re.error as exc:
        raise ValueError(f"the REGEX {pattern!r} does not compile: {exc}") from None
    foreign = _not_ecmascript(pattern)
    if foreign:
        raise ValueError(f"the REGEX {pattern!r} uses {foreign}, which llama.cpp's ECMAScript regex does not have")
    if not _DEVICE.fullmatch(device):
        raise ValueError(f"expected a device (buffer type) name such as CPU or CUDA0 after '=', got {device!r}")


def _not_ecmascript(pattern: str) -> str | None:
    """Python-only syntax that compiles here but not in std::regex: ``(?P..)``, ``(?i)``, lookbehind, ``\\A``, ``\\Z``."""
    i, in_class = 0, False
    while i < len(pattern):
        ch = pattern[i]
        if ch == "\\":
            if not in_class and pattern[i + 1:i + 2] in ("A", "Z"):
                return f"'\\{pattern[i + 1]}'"
            i += 2
            continue
        if in_class:
            in_class = ch != "]"
        elif ch == "[":
            in_class = True
            i += 2 if pattern[i + 1:i + 2] == "]" else 1  # "[]...]": a leading ] is a member
            continue
        elif ch == "(" and pattern[i + 1:i + 2] == "?" and pattern[i + 2:i + 3] not in (":", "=", "!"):
            return f"'{pattern[i:i + 3]}'"
        i += 1
    return None


def check_model_overrides(entry: Any, base: str) -> None:
    """A ``[models.NAME]`` entry's ``tensor_overrides`` and ``n_cpu_moe``; errors name ``base.field``."""
    for i, override in enumerate(entry.tensor_overrides or ()):
        try:
            check_override(override)
        except ValueError as exc:
            raise ConfigError(f"{base}.tensor_overrides[{i}]: {exc}; got {override!r}") from None
    if entry.n_cpu_moe is not None and not 0 <= entry.n_cpu_moe <= MAX_OVERRIDES:
        raise ConfigError(f"{base}.n_cpu_moe: expected an integer in 0..{MAX_OVERRIDES} (the MoE experts of the "
                          f"first N layers stay in RAM), got {entry.n_cpu_moe!r}")


def check_resolved_overrides(cfg: Any, base: str) -> None:
    """A model's resolved overrides, expanded, must fit llama.cpp's table."""
    n = len(expand_overrides(cfg))
    if n > MAX_OVERRIDES:
        raise ConfigError(f"{base}: {n} tensor overrides once cpu_moe/n_cpu_moe are expanded; llama.cpp takes at "
                          f"most {MAX_OVERRIDES}")


def expand_overrides(cfg: Any) -> tuple[str, ...]:
    """What the runner passes to llama.cpp, in order: the explicit overrides, then ``cpu_moe``'s pattern or
    ``n_cpu_moe``'s one pattern per layer (``blk\\.0\\.ffn_...``, ``blk\\.1\\.ffn_...``).

    ``cfg`` is a ``RunnerConfig`` (anything with ``tensor_overrides``, ``cpu_moe``, ``n_cpu_moe``). With
    ``cpu_moe`` the per-layer patterns are left out: every tensor they match, ``cpu_moe``'s matches first,
    to the same CPU, so the placement is the one llama-server makes with both flags, with fewer patterns
    for llama.cpp to try on every tensor.
    """
    explicit = tuple(cfg.tensor_overrides or ())
    if cfg.cpu_moe:
        return (*explicit, f"{FFN_EXPS_REGEX}={CPU}")
    return (*explicit, *(f"{block_exps_regex(i)}={CPU}" for i in range(cfg.n_cpu_moe or 0)))
