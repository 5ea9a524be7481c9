"""The recording fakes of the lifecycle tests: a runner that answers /load and /health the way a real
one does, with knobs for slow, failing, stalling and crashing loads; a launcher; a CPU-only machine."""

from __future__ import annotations

import asyncio
import collections
from pathlib import Path

from mullama import wire
from mullama.config import load_settings
from mullama.core import errors
from mullama.hardware.devices import Devices, Host
from mullama.models.entry import ModelEntry
from mullama.models.gguf_header import GgufHeader
from mullama.serving.lifecycle import Lifecycle

GiB = 1 << 30
MiB = 1 << 20


def entry(name: str, n_layer: int = 4, layer: int = 10 * MiB) -> ModelEntry:
    family, variant = name.split(":")
    header = GgufHeader(architecture="llama", name=name, basename=family, size_label="1M", quantization="Q4_1",
                        parameters=1_000_000, context_length=2048, n_layer=n_layer, n_embd=64, n_head=4,
                        n_head_kv=4, n_vocab=100, layer_bytes=(layer,) * n_layer, output_bytes=MiB,
                        input_bytes=MiB, has_chat_template=True, metadata={})
    return ModelEntry(name=name, family=family, variant=variant, path=Path(f"/models/{family}-{variant}.gguf"),
                      parts=(), size_bytes=n_layer * layer, modified=0.0, id=name[:12], header=header, error=None,
                      source="models_dir")


class FakeClient:
    broken = False

    def __init__(self, runner: FakeRunner) -> None:
        self.r = runner

    async def load(self, params: wire.LoadParams, timeout: float | None = None) -> wire.LoadResult:
        r = self.r
        r.ops.append((params.op, params.n_gpu_layers))
        r.load_cpu = (tuple(params.cores), params.n_threads, params.n_threads_batch)
        r.load_cache_ram = params.cache_ram
        if not r.alive:
            raise errors.RunnerCrashed("gone")
        if params.op == r.refuse:
            raise errors.InvalidArgument("invalid request body: Expected `int`, got `str` - at `$.cache_ram`")
        if params.op == "alloc":
            if r.oom_allocs > 0:
                r.oom_allocs -= 1
                raise errors.OutOfMemory("cudaMalloc failed")
            if r.stall:
                r.progress = 0.1
                await r.dead.wait()
                raise errors.RunnerCrashed("connection reset")
            await asyncio.sleep(r.alloc_s)
            r.progress = 0.5
        if params.op == "commit":
            r.status = "warming"
            await asyncio.sleep(r.commit_s)
            r.status, r.progress = "ready", 1.0
        devices = [wire.DeviceMemory(device="CPU", description="cpu", type="cpu", free=0, total=0,
                                     model=r.memory // 2, context=r.memory // 4, compute=r.memory // 4)]
        return wire.LoadResult(op=params.op, status=r.status, devices=devices, n_ctx=2048, n_layer=4)

    async def set_cpu(self, allotment: wire.CpuAllotment) -> wire.CpuAllotment:
        if not self.r.alive:
            raise errors.RunnerCrashed("gone")
        self.r.cpu.append((tuple(allotment.cores), allotment.threads, allotment.threads_batch))
        return allotment

    async def cache_ram(self, limit: int | None = None) -> wire.CacheRam:
        if not self.r.alive:
            raise errors.RunnerCrashed("gone")
        if limit is not None and self.r.stuck_cache:
            raise errors.RunnerError("the model's runner did not answer POST /cache-ram within 60 s", 504,
                                     "runner_timeout")
        if limit is not None:
            self.r.cache_limits.append(limit)
            self.r.held = min(self.r.held, limit)
        return wire.CacheRam(limit=self.r.cache_limits[-1] if self.r.cache_limits else 0, held=self.r.held)

    async def health(self, timeout: float = 5.0) -> wire.Health:
        if not self.r.alive:
            raise errors.RunnerCrashed("gone")
        return wire.Health(status=self.r.status, progress=self.r.progress)


class FakeRunner:
    """Implements lifecycle.Handle."""

    def __init__(self, name: str, pid: int, **knobs) -> None:
        self.name, self.pid, self.port = name, pid, 40000 + pid
        self.exited: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self.tail = collections.deque(["last words"], maxlen=5)
        self.stalled = ""
        self._stopping = False
        self.status, self.progress = "starting", 0.0
        self.ops: list[tuple[str, int]] = []
        self.cpu: list[tuple[tuple[int, ...], int, int]] = []  # POST /cpu calls: (cores, threads, threads_batch)
        self.load_cpu: tuple[tuple[int, ...], int, int] = ((), 0, 0)  # what the last load op carried
        self.load_cache_ram = -1                                      # ... and its cache_ram
        self.cache_limits: list[int] = []  # POST /cache-ram calls
        self.held = knobs.get("held", 0)   # bytes of parked prefix caches it holds
        self.stuck_cache = knobs.get("stuck_cache", False)  # POST /cache-ram times out
        self.dead = asyncio.Event()
        self.memory = knobs.get("memory", 100 * MiB)
        self.oom_allocs = knobs.get("oom_allocs", 0)
        self.stall = knobs.get("stall", False)
        self.alloc_s = knobs.get("alloc_s", 0.0)
        self.commit_s = knobs.get("commit_s", 0.0)
        self.refuse = knobs.get("refuse")  # a load op answered 400 (the runner refused its parameters)
        self.client = FakeClient(self)

    @property
    def alive(self) -> bool:
        return not self.exited.done()

    @property
    def stopping(self) -> bool:
        return self._stopping

    def crash(self, code: int = -9) -> None:
        self.dead.set()
        if not self.exited.done():
            self.exited.set_result(code)

    async def stop(self, drain_timeout: float) -> int:
        self._stopping = True
        self.crash(0)
        return 0

    async def kill(self) -> int:
        self._stopping = True
        self.crash(-9)
        return -9


class Launcher:
    def __init__(self, **knobs) -> None:
        self.knobs = knobs
        self.per_model: dict[str, dict] = {}
        self.started: list[FakeRunner] = []

    async def __call__(self, name: str) -> FakeRunner:
        runner = FakeRunner(name, len(self.started) + 1, **{**self.knobs, **self.per_model.get(name, {})})
        self.started.append(runner)
        return runner

    def of(self, name: str) -> list[FakeRunner]:
        return [r for r in self.started if r.name == name]


def cpu_only(ram: int = 64 * GiB) -> Devices:
    return Devices(gpus=(), host=Host(ram_total=ram, ram_available=ram, swap_total=0, swap_free=0))


def make(settings: dict | None = None, devices: Devices | None = None, **knobs) -> tuple[Lifecycle, Launcher, list]:
    launcher = Launcher(**knobs)
    events: list[tuple[str, dict]] = []
    s = load_settings({"keep_alive": "5m", "drain_timeout": "0.5s", **(settings or {})}, env={})
    life = Lifecycle(s, launcher, lambda: devices or cpu_only(), emit=lambda kind, **f: events.append((kind, f)))
    return life, launcher, events


def states(life: Lifecycle, name: str) -> list[str]:
    return [h["state"] for h in life.runtimes[name].history]
