"""What memory this machine has: GPUs through NVML, host RAM and swap through psutil.

The one module that touches hardware. Everything else (placement above all)
takes a ``Devices`` value, so tests and planners never need a GPU: ``probe()``
accepts fake ``nvml`` and ``psutil`` modules, and the environment variable
``MULLAMA_FAKE_GPUS`` replaces NVML entirely for integration tests and demos
on a GPU-less machine::

    MULLAMA_FAKE_GPUS='[{"name": "RTX 4090", "total": "24GiB", "free": "22GiB"},
                        {"name": "RTX 3060", "total": 12884901888, "free": 10737418240}]'

Each entry needs ``name``, ``total`` and ``free`` (bytes, or a size string such
as ``"24GiB"``); ``uuid`` is optional. An empty list means "no GPUs". A value
that does not parse raises ``ConfigError`` (a ``ValueError``) naming the variable.

Why NVML and not llama.cpp's own device list: the supervisor must start without
the C++ extension, and NVML answers in microseconds without creating a CUDA
context. NVML numbers devices in PCI bus order; llama.cpp (CUDA) does the same
only when the runner runs with ``CUDA_DEVICE_ORDER=PCI_BUS_ID``, which the runner
environment should set so that GPU *i* here is device *i* there.

Any NVML failure (library missing, no driver, an ``NVMLError``) means "no GPUs":
a CPU-only machine is a normal case, not an error, so it is logged at debug, once
per probe. A single device that fails to answer is skipped, the others are kept.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import structlog

from mullama.core.errors import ConfigError
from mullama.core.units import parse_size

FAKE_GPUS_ENV = "MULLAMA_FAKE_GPUS"

log = structlog.get_logger("mullama.devices")


@dataclass(frozen=True)
class Gpu:
    """One GPU as NVML sees it; sizes in bytes."""

    index: int
    name: str
    uuid: str
    total: int
    free: int

    @property
    def used(self) -> int:
        return max(0, self.total - self.free)


@dataclass(frozen=True)
class Host:
    """Host memory in bytes: ``ram_available`` is what psutil calls available (free + reclaimable)."""

    ram_total: int
    ram_available: int
    swap_total: int
    swap_free: int

    @property
    def available(self) -> int:
        """RAM that can be had without evicting anything, plus free swap (Ollama's rule on Linux)."""
        return self.ram_available + self.swap_free


@dataclass(frozen=True)
class RemoteDevice:
    """A device an RPC worker offers (llama.cpp's RPC backend); sizes in bytes, as the worker reports them."""

    endpoint: str  # host:port of the worker
    index: int     # the device's number on its worker
    free: int
    total: int

    @property
    def label(self) -> str:
        return f"{self.endpoint}#{self.index}"


@dataclass(frozen=True)
class Devices:
    """A snapshot of the machine's memory; free numbers are only true at the moment of the probe.

    ``remote`` are RPC workers' devices a model may spread over (the supervisor's probe adds them, in the
    configured order, which is the order llama.cpp numbers them in); ``remote_skipped`` says, for NoFit
    messages, which configured workers were left out and why ("10.0.0.3:50052: unreachable (...)").
    """

    gpus: tuple[Gpu, ...]
    host: Host
    remote: tuple[RemoteDevice, ...] = ()
    remote_skipped: tuple[str, ...] = ()

    @property
    def vram_free(self) -> int:
        return sum(g.free for g in self.gpus)

    @property
    def vram_total(self) -> int:
        return sum(g.total for g in self.gpus)

    def describe(self) -> dict[str, Any]:
        """JSON-able summary for the API and ``mullama ps``."""
        return {
            "gpus": [
                {"index": g.index, "name": g.name, "uuid": g.uuid, "total": g.total, "free": g.free}
                for g in self.gpus
            ],
            "host": {
                "ram_total": self.host.ram_total,
                "ram_available": self.host.ram_available,
                "swap_total": self.host.swap_total,
                "swap_free": self.host.swap_free,
            },
            "vram_total": self.vram_total,
            "vram_free": self.vram_free,
            "cpu_only": not self.gpus,
        }


def probe(
    *,
    nvml: object | None = None,
    psutil_mod: object | None = None,
    environ: Mapping[str, str] | None = None,
) -> Devices:
    """Read GPUs and host memory now.

    ``nvml`` replaces the ``pynvml`` module and ``psutil_mod`` the ``psutil`` module
    (tests pass fakes). Without an explicit ``nvml``, a set ``MULLAMA_FAKE_GPUS`` in
    ``environ`` (default ``os.environ``) replaces NVML; see the module docstring.
    Raises ``ConfigError`` when ``MULLAMA_FAKE_GPUS`` does not parse; NVML failures
    never raise.
    """
    env = os.environ if environ is None else environ
    if nvml is not None:
        gpus = _nvml_gpus(nvml)
    elif env.get(FAKE_GPUS_ENV, "").strip():
        gpus = parse_fake_gpus(env[FAKE_GPUS_ENV])
    else:
        gpus = _nvml_gpus(_import_pynvml())
    return Devices(gpus=gpus, host=_host(psutil_mod))


def parse_fake_gpus(text: str) -> tuple[Gpu, ...]:
    """GPUs from the JSON of ``MULLAMA_FAKE_GPUS``; ConfigError naming the variable when it does not parse."""
    try:
        entries = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{FAKE_GPUS_ENV} is not valid JSON ({exc}); expected a list such as "
                          f'[{{"name": "A100", "total": "80GiB", "free": "79GiB"}}]') from None
    if not isinstance(entries, list):
        raise ConfigError(f"{FAKE_GPUS_ENV} must be a JSON list of objects, got {type(entries).__name__}")
    gpus = []
    for i, entry in enumerate(entries):
        where = f"{FAKE_GPUS_ENV}[{i}]"
        if not isinstance(entry, dict):
            raise ConfigError(f"{where} must be an object with name, total and free, got {entry!r}")
        missing = [k for k in ("name", "total", "free") if k not in entry]
        if missing:
            raise ConfigError(f"{where} lacks {', '.join(missing)}")
        unknown = sorted(set(entry) - {"name", "total", "free", "uuid"})
        if unknown:
            raise ConfigError(f"{where} has unknown field(s) {', '.join(unknown)} "
                              "(allowed: name, total, free, uuid)")
        total, free = _fake_size(entry["total"], f"{where}.total"), _fake_size(entry["free"], f"{where}.free")
        if free > total:
            raise ConfigError(f"{where}: free ({free}) is larger than total ({total})")
        name, uuid = entry["name"], entry.get("uuid", f"GPU-fake-{i}")
        if not isinstance(name, str) or not isinstance(uuid, str):
            raise ConfigError(f"{where}: name and uuid must be strings")
        gpus.append(Gpu(index=i, name=name, uuid=uuid, total=total, free=free))
    return tuple(gpus)


def _fake_size(value: object, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ConfigError(f"{where} must be a byte count or a size such as '24GiB', got {value!r}")
    try:
        return parse_size(value)
    except ValueError as exc:
        raise ConfigError(f"{where}: {exc}") from None


def _import_pynvml() -> object | None:
    try:
        import pynvml
    except ImportError:
        return None
    return pynvml


def _text(value: object) -> str:
    # pynvml before 11.5 returns bytes, later versions str.
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


def _nvml_gpus(nvml: object | None) -> tuple[Gpu, ...]:
    """GPUs through NVML; any failure of NVML as a whole means none (CPU only).

    Every NVML call is guarded with ``except Exception``: NVML raises ``NVMLError``
    subclasses, but a broken install can also raise OSError or AttributeError from
    the ctypes layer, and no failure to *find* a GPU may stop the server.
    """
    if nvml is None:
        log.debug("no GPUs: the pynvml module is not installed")
        return ()
    try:
        nvml.nvmlInit()  # type: ignore[attr-defined]
    except Exception as exc:
        log.debug("no GPUs: NVML is not available", error=str(exc), error_type=type(exc).__name__)
        return ()
    gpus = []
    try:
        count = nvml.nvmlDeviceGetCount()  # type: ignore[attr-defined]
        for i in range(count):
            try:
                handle = nvml.nvmlDeviceGetHandleByIndex(i)  # type: ignore[attr-defined]
                mem = nvml.nvmlDeviceGetMemoryInfo(handle)  # type: ignore[attr-defined]
                name = _text(nvml.nvmlDeviceGetName(handle))  # type: ignore[attr-defined]
                uuid = _text(nvml.nvmlDeviceGetUUID(handle))  # type: ignore[attr-defined]
            except Exception as exc:
                log.debug("skipping a GPU that NVML cannot read", index=i, error=str(exc))
                continue
            gpus.append(Gpu(index=i, name=name, uuid=uuid, total=int(mem.total), free=int(mem.free)))
    except Exception as exc:
        log.debug("no GPUs: NVML failed to list devices", error=str(exc), error_type=type(exc).__name__)
        return ()
    finally:
        try:
            nvml.nvmlShutdown()  # type: ignore[attr-defined]
        except Exception as exc:
            log.debug("NVML shutdown failed", error=str(exc))
    return tuple(gpus)


def _host(psutil_mod: object | None) -> Host:
    if psutil_mod is None:
        import psutil as psutil_mod
    vm = psutil_mod.virtual_memory()  # type: ignore[attr-defined]
    sw = psutil_mod.swap_memory()  # type: ignore[attr-defined]
    return Host(ram_total=int(vm.total), ram_available=int(vm.available),
                swap_total=int(sw.total), swap_free=int(sw.free))
