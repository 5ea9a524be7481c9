#!/usr/bin/env python3
"""What LoRA adapter sets cost on ``mullama serve`` against ``llama-server``, one run, sides alternating.

Both servers load SmolLM2 with the same two random-weight LoRAs (``tests/gguf_factory.write_lora``;
llama-server: ``--lora a --lora b --lora-init-without-apply``), with the same threads, slots, context and
flash attention. Four concurrent streaming completions (``max_tokens`` 64, ``ignore_eos``, greedy, a new
prompt each round so no cache helps) under three mixes of per-request ``lora`` sets:

* ``no adapters``: all four ``[]`` (the base model);
* ``one set``: all four the same adapter (scale 1);
* ``four sets``: none, a, b, and a + b/2 -- requests llama.cpp cannot decode in one batch.

Reported (medians): aggregate completion tokens/s, each mix as a ratio against the same server's ``no
adapters`` and mullama against llama-server; the slowest of the four first tokens (how long the last set
waits for its turn); mullama's adapter switches per round (``/internal/kv``).

    python benchmarks/lora_sets.py --threads 2 --reps 5 --out results/lora-sets.md
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.insert(0, str(ROOT / "tests"))

from baselines import build_tools  # noqa: E402
from gguf_factory import write_lora  # noqa: E402
from runner_vs_llama_server import LlamaServer, _free_port, _wait  # noqa: E402
from supervisor_vs_runner import Supervisor  # noqa: E402

from mullama.models import assets  # noqa: E402

MODEL = "smollm2:q4_1"
A, B = [{"id": 0, "scale": 1.0}], [{"id": 1, "scale": 1.0}]
MIXES = {"no adapters": [[], [], [], []], "one set": [A, A, A, A],
         "four sets": [[], A, B, [{"id": 0, "scale": 1.0}, {"id": 1, "scale": 0.5}]]}
TOKENS = 64


class LoraLlamaServer(LlamaServer):
    def __init__(self, exe: Path, model: Path, loras: list[str], a: argparse.Namespace) -> None:
        port = _free_port()
        self.url = f"http://127.0.0.1:{port}"
        cmd = [str(exe), "-m", str(model), "--host", "127.0.0.1", "--port", str(port), "-t", str(a.threads),
               "-tb", str(a.threads), "-np", str(a.parallel), "-c", str(a.ctx), "-b", "2048", "-ub", "512",
               "-fa", a.flash_attn, "-kvu", "--no-webui", "-cram", "0", "--lora-init-without-apply"]
        for path in loras:
            cmd += ["--lora", path]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    async def ready(self, session: aiohttp.ClientSession) -> None:
        await _wait(lambda: session.get(self.url + "/health"), lambda r: r.status == 200, self.proc)

    async def one(self, session: aiohttp.ClientSession, prompt: str, lora: list[dict]) -> tuple[int, float]:
        body = {"prompt": prompt, "n_predict": TOKENS, "ignore_eos": True, "temperature": 0, "lora": lora,
                "cache_prompt": True, "stream": True}
        t0, first, n = time.perf_counter(), None, 0
        async with session.post(self.url + "/completion", json=body) as r:
            r.raise_for_status()
            async for raw in r.content:
                if not raw.startswith(b"data: "):
                    continue
                msg = json.loads(raw[6:])
                if msg.get("content") and first is None:
                    first = time.perf_counter() - t0
                if msg.get("stop"):
                    n = msg.get("tokens_predicted", n)
        return n, (first or 0.0) * 1000


class LoraSupervisor(Supervisor):
    async def one(self, session: aiohttp.ClientSession, prompt: str, lora: list[dict]) -> tuple[int, float]:
        body = {"model": MODEL, "prompt": prompt, "max_tokens": TOKENS, "ignore_eos": True, "temperature": 0,
                "lora": lora, "stream": True, "stream_options": {"include_usage": True}}
        t0, first, n = time.perf_counter(), None, 0
        async with session.post(self.url + "/v1/completions", json=body) as r:
            r.raise_for_status()
            async for raw in r.content:
                if not raw.startswith(b"data: {"):
                    continue
                msg = json.loads(raw[6:])
                if msg["choices"] and msg["choices"][0].get("text") and first is None:
                    first = time.perf_counter() - t0
                if msg.get("usage"):
                    n = msg["usage"]["completion_tokens"]
        return n, (first or 0.0) * 1000

    async def switches(self, session: aiohttp.ClientSession) -> int:
        async with session.get(self.url + f"/internal/kv/{MODEL}") as r:
            return (await r.json())["adapter_switches"]


async def round_of(server, session: aiohttp.ClientSession, mix: str, tag: str) -> tuple[float, int, float]:
    prompts = [f"Round {tag} request {i}: tell a long story about the sea, the ships and the lighthouse."
               for i in range(4)]
    t0 = time.perf_counter()
    try:
        answers = await asyncio.gather(*(server.one(session, p, lora) for p, lora in zip(prompts, MIXES[mix])))
    except aiohttp.ClientError as exc:
        raise RuntimeError(f"{type(server).__name__} (exit status {server.proc.poll()}), {mix}, round {tag}: "
                           f"{exc!r}") from exc
    return (time.perf_counter() - t0) * 1000, sum(n for n, _ in answers), max(ttft for _, ttft in answers)


async def main_async(a: argparse.Namespace) -> dict:
    model = assets.default_model_path()
    tmp = tempfile.TemporaryDirectory(prefix="mullama-lora-bench-")
    loras = [str(write_lora(Path(tmp.name) / f"{n}.gguf", model, seed=s)) for n, s in (("a", 1), ("b", 2))]
    exe = build_tools(["llama-server"])["llama-server"]
    extra = "".join(f'[[models.smollm2.adapters]]\npath = "{p}"\nscale = 0.0\n' for p in loras)
    servers = {"mullama": LoraSupervisor(a, extra=extra, models_dir=str(model.parent)),
               "llama-server": LoraLlamaServer(exe, model, loras, a)}
    out: dict = {s: {m: {"wall_ms": [], "tok_s": [], "last_first_ms": []} for m in MIXES} for s in servers}
    out["switches"] = {m: [] for m in MIXES}
    try:
        # a new connection per request, for both servers: llama-server closes idle keep-alive connections,
        # and reusing one it has just closed fails as ServerDisconnectedError
        connector = aiohttp.TCPConnector(force_close=True)
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=600), connector=connector) as session:
            for s in servers.values():
                await s.ready(session)
                await round_of(s, session, "four sets", "warm-up")
            for rep in range(a.reps):
                order = list(servers) if rep % 2 == 0 else list(reversed(servers))
                for mix in (MIXES if rep % 2 == 0 else list(reversed(MIXES))):
                    for name in order:
                        s = servers[name]
                        before = await s.switches(session) if name == "mullama" else 0
                        wall, tokens, last_first = await round_of(s, session, mix, f"{rep}-{mix}-{name}")
                        out[name][mix]["wall_ms"].append(wall)
                        out[name][mix]["last_first_ms"].append(last_first)
                        out[name][mix]["tok_s"].append(tokens / wall * 1000)
                        if name == "mullama":
                            out["switches"][mix].append(await s.switches(session) - before)
    finally:
        for s in servers.values():
            s.stop()
        tmp.cleanup()
    return out


def summarize(r: dict, a: argparse.Namespace) -> str:
    med = statistics.median
    lines = [(f"Threads {a.threads}, n_parallel {a.parallel}, 4 concurrent x {TOKENS} tokens, {a.reps} rounds "
              "(medians)."), "",
             ("| mix | mullama tok/s | vs its no-adapter | llama-server tok/s | vs its no-adapter | mullama / "
              "llama-server | slowest first token ms, mullama / llama-server | mullama switches/round |"),
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for mix in MIXES:
        ours, theirs = med(r["mullama"][mix]["tok_s"]), med(r["llama-server"][mix]["tok_s"])
        base_ours, base_theirs = med(r["mullama"]["no adapters"]["tok_s"]), med(r["llama-server"]["no adapters"]["tok_s"])
        lines.append(f"| {mix} | {ours:.1f} | {ours / base_ours:.2f}x | {theirs:.1f} | {theirs / base_theirs:.2f}x | "
                     f"{ours / theirs:.2f}x | {med(r['mullama'][mix]['last_first_ms']):.0f} / "
                     f"{med(r['llama-server'][mix]['last_first_ms']):.0f} | {med(r['switches'][mix]):.0f} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--parallel", type=int, default=4)
    p.add_argument("--ctx", type=int, default=4096)
    p.add_argument("--flash-attn", choices=["on", "off"], default="on")
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--out")
    p.add_argument("--json")
    a = p.parse_args(argv)
    result = asyncio.run(main_async(a))
    table = summarize(result, a)
    print(table)
    if a.out:
        Path(a.out).parent.mkdir(parents=True, exist_ok=True)
        Path(a.out).write_text(table)
    if a.json:
        Path(a.json).write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
