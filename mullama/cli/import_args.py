"""``mullama import-args [--name NAME] -- <llama-server arguments>``: a llama-server command line as
mullama's TOML (server settings, a ``[models.NAME]`` table and its ``sampling`` table), and what could
not be mapped, each with the reason. A migration aid: the output is meant to be read, then kept.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mullama.bench.servers import toml_value
from mullama.config.tensors import CPU, expand_overrides


def _floats(text: str) -> list[float]:
    return [float(x) for x in text.replace(";", ",").split(",") if x.strip()]


def _escapes(text: str) -> str:
    """llama-server's escapes in a string argument (\\n, \\t, \\\\, \\")."""
    out, i = [], 0
    while i < len(text):
        if text[i] == "\\" and i + 1 < len(text) and text[i + 1] in "nt\\\"":
            out.append({"n": "\n", "t": "\t"}.get(text[i + 1], text[i + 1]))
            i += 2
        else:
            out.append(text[i])
            i += 1
    return "".join(out)


def _items(text: str) -> list[str]:
    """A comma-separated list, as ``-ot`` and ``--lora`` take several values."""
    return [x.strip() for x in text.split(",") if x.strip()]


def _count(text: str) -> int:
    n = int(text)
    if n < 0:
        raise ValueError(text)
    return n


def _numa(text: str) -> str:
    word = text.strip().lower() or "distribute"  # llama-server: an empty TYPE means distribute
    if word not in ("distribute", "isolate", "numactl"):
        raise ValueError(text)
    return word


def _dense_ffn(text: str) -> list[str]:
    """``--n-cpu-ffn N``: llama.cpp's LLM_FFN_DENSE_REGEX for the first N layers, as explicit overrides."""
    return [rf"blk\.{i}\.ffn_(up|down|gate)\.={CPU}" for i in range(_count(text))]


def _lora_scaled(text: str) -> list[dict[str, Any]]:
    """``--lora-scaled FNAME:SCALE,...`` (the path may hold colons: the scale is after the last)."""
    out = []
    for item in _items(text):
        path, colon, scale = item.rpartition(":")
        if not colon or not path:
            raise ValueError(item)
        out.append({"path": path, "scale": float(scale)})
    return out


def _number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _old_scaled(pair: Sequence[str]) -> bool:
    """``--lora-scaled PATH SCALE`` (older llama.cpp): a PATH without ``:SCALE``, then a number."""
    return len(pair) == 2 and _number(pair[1]) and not _number(pair[0].rpartition(":")[2])


def _cache_ram(text: str) -> int:
    """``--cache-ram N``: MiB, 0 off, -1 no limit (here 1 TiB: a size is never negative)."""
    mib = int(text)
    if mib < -1:
        raise ValueError(text)
    return 1 << 40 if mib == -1 else mib << 20


def _flash(text: str) -> str:
    word = text.strip().lower()
    return {"1": "on", "true": "on", "0": "off", "false": "off"}.get(word, word)


#: llama-server flag -> (table, our key, converter); table "server", "model", "sampling" or "speculative"
FLAGS: dict[str, tuple[str, str, Callable[[str], Any]]] = {}


def _add(names: Sequence[str], table: str, key: str, convert: Callable[[str], Any]) -> None:
    for name in names:
        FLAGS[name] = (table, key, convert)


_add(["--host"], "server", "host", str)
_add(["--port"], "server", "port", int)
_add(["--api-key"], "server", "api_keys", str)
_add(["--reasoning-format"], "server", "reasoning_format", str)
_add(["-m", "--model"], "model", "path", str)
_add(["-c", "--ctx-size"], "model", "n_ctx", int)
_add(["-np", "--parallel"], "model", "n_parallel", int)
_add(["-b", "--batch-size"], "model", "n_batch", int)
_add(["-ub", "--ubatch-size"], "model", "n_ubatch", int)
_add(["-ngl", "--gpu-layers", "--n-gpu-layers"], "model", "n_gpu_layers", int)
_add(["-ts", "--tensor-split"], "model", "tensor_split", _floats)
_add(["-t", "--threads"], "model", "threads", int)
_add(["-tb", "--threads-batch"], "model", "threads_batch", int)
_add(["-fa", "--flash-attn"], "model", "flash_attn", _flash)
_add(["-ctk", "--cache-type-k"], "model", "cache_type_k", str.lower)
_add(["-ctv", "--cache-type-v"], "model", "cache_type_v", str.lower)
_add(["-mg", "--main-gpu"], "model", "main_gpu", int)
_add(["-sm", "--split-mode"], "model", "split_mode", str.lower)
_add(["--chat-template", "--chat-template-file"], "model", "chat_template", str)
_add(["--mlock"], "model", "use_mlock", lambda _: True)
_add(["-nkvo", "--no-kv-offload"], "model", "kv_offload", lambda _: False)
_add(["--swa-full"], "model", "swa_full", lambda _: True)
_add(["-kvu", "--kv-unified"], "model", "kv_unified", lambda _: True)
_add(["-no-kvu", "--no-kv-unified"], "model", "kv_unified", lambda _: False)
_add(["--check-tensors"], "model", "check_tensors", lambda _: True)
_add(["-cram", "--cache-ram"], "model", "cache_ram", _cache_ram)
_add(["--no-cache-idle-slots"], "model", "cache_ram", lambda _: 0)  # the nearest: mullama parks with both or neither
_add(["--pooling"], "model", "pooling", str.lower)
_add(["--override-kv"], "model", "override_kv", str)
_add(["--rope-scaling"], "model", "rope_scaling", str.lower)
_add(["--rope-freq-base"], "model", "rope_freq_base", float)
_add(["--rope-freq-scale"], "model", "rope_freq_scale", float)
_add(["--rope-scale"], "model", "rope_freq_scale", lambda s: 1.0 / float(s))
_add(["--yarn-orig-ctx"], "model", "yarn_orig_ctx", int)
_add(["--no-mmap"], "model", "use_mmap", lambda _: False)
_add(["-ot", "--override-tensor"], "model", "tensor_overrides", _items)
_add(["-ncffn", "--n-cpu-ffn"], "model", "tensor_overrides", _dense_ffn)
_add(["-ncmoe", "--n-cpu-moe"], "model", "n_cpu_moe", _count)
_add(["-cmoe", "--cpu-moe"], "model", "cpu_moe", lambda _: True)
_add(["--numa"], "model", "numa", _numa)
_add(["--context-shift"], "model", "context_shift", lambda _: True)
_add(["--no-context-shift"], "model", "context_shift", lambda _: False)
_add(["--rpc"], "model", "rpc_workers", _items)
_add(["--spec-type"], "speculative", "types", _items)
_add(["--spec-draft-n-max"], "speculative", "n_max", int)
_add(["--spec-draft-n-min"], "speculative", "n_min", int)
_add(["--spec-ngram-simple-size-n"], "speculative", "ngram_n", int)
_add(["--spec-ngram-simple-size-m"], "speculative", "ngram_m", int)
_add(["--spec-ngram-simple-min-hits"], "speculative", "ngram_min_hits", int)
_add(["--spec-draft-model", "-md", "--model-draft"], "speculative", "draft_model", str)
_add(["--spec-draft-p-min", "--draft-p-min"], "speculative", "draft_p_min", float)
_add(["--spec-draft-ngl", "-ngld", "--gpu-layers-draft", "--n-gpu-layers-draft"], "speculative", "draft_gpu_layers",
     lambda s: -1 if s in ("auto", "all") else int(s))
_add(["--lora"], "model", "adapters", lambda s: [{"path": p} for p in _items(s)])
_add(["--lora-scaled"], "model", "adapters", _lora_scaled)
for _flag, _key, _conv in [
    ("--temp", "temperature", float), ("--top-k", "top_k", int), ("--top-p", "top_p", float),
    ("--min-p", "min_p", float), ("--typical", "typical_p", float), ("--repeat-penalty", "repeat_penalty", float),
    ("--repeat-last-n", "repeat_last_n", int), ("--presence-penalty", "presence_penalty", float),
    ("--frequency-penalty", "frequency_penalty", float), ("--seed", "seed", int), ("-s", "seed", int),
    ("--mirostat", "mirostat", int), ("--mirostat-lr", "mirostat_eta", float),
    ("--mirostat-ent", "mirostat_tau", float), ("--xtc-probability", "xtc_probability", float),
    ("--xtc-threshold", "xtc_threshold", float), ("--dry-multiplier", "dry_multiplier", float),
    ("--dry-base", "dry_base", float), ("--dry-allowed-length", "dry_allowed_length", int),
    ("--dry-penalty-last-n", "dry_penalty_last_n", int), ("--dry-sequence-breaker", "dry_sequence_breakers", _escapes),
    ("--top-nsigma", "top_n_sigma", float), ("--dynatemp-range", "dynatemp_range", float),
    ("--dynatemp-exp", "dynatemp_exponent", float), ("--min-keep", "min_keep", int),
    ("--samplers", "samplers", lambda s: [x for x in s.split(";") if x]),
]:
    _add([_flag], "sampling", _key, _conv)

#: flags whose value may be left out (a bare ``-fa`` means on), and flags that never take one
SWITCHES = {"-fa": "on", "--flash-attn": "on"}
BARE = frozenset({"--mlock", "--no-mmap", "-nkvo", "--no-kv-offload", "--swa-full", "--check-tensors", "-cmoe",
                  "--cpu-moe", "--context-shift", "--no-context-shift", "--no-cache-idle-slots"})
#: keys a repeated flag adds to rather than replaces, and those whose flag gives a list to add
LISTS = frozenset({"api_keys", "dry_sequence_breakers", "override_kv"})
EXTENDS = frozenset({"tensor_overrides", "adapters"})
MOE_KEYS = ("cpu_moe", "n_cpu_moe")
#: flags whose behaviour mullama always has, or that only concern llama-server's own front end
BUILT_IN = {
    "--jinja": "chat templates are always rendered with Jinja", "--no-webui": "mullama serves no web UI here",
    "-kvu": "the KV cache is unified by default", "--kv-unified": "the KV cache is unified by default",
    "-cb": "continuous batching is always on", "--cont-batching": "continuous batching is always on",
    "--metrics": "/metrics is always served", "--slots": "/internal/kv shows the slots",
    "--cache-idle-slots": "idle slots' caches go to host memory by default (cache_ram)",
}
#: flags with a name but no equivalent yet, and why
UNSUPPORTED = {
    "--control-vector": "control vectors are not supported yet",
}


@dataclass
class Imported:
    server: dict[str, Any] = field(default_factory=dict)
    model: dict[str, Any] = field(default_factory=dict)
    sampling: dict[str, Any] = field(default_factory=dict)
    speculative: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)     # flags not mapped, with the reason
    name: str | None = None                              # from --alias
    lora_without_apply: bool = False                     # --lora-init-without-apply: every scale 0
    moe_at: int | None = None                            # explicit -ot entries before --cpu-moe/--n-cpu-moe

    def toml(self, name: str) -> str:
        lines = [f"{k} = {toml_value(v)}" for k, v in self.server.items()]
        table = json.dumps(name)
        lines += ["", f"[models.{table}]",
                  *(f"{k} = {toml_value(v)}" for k, v in self.model.items() if k != "adapters")]
        if self.sampling:
            lines += ["", f"[models.{table}.sampling]", *(f"{k} = {toml_value(v)}" for k, v in self.sampling.items())]
        if self.speculative:
            lines += ["", f"[models.{table}.speculative]",
                      *(f"{k} = {toml_value(v)}" for k, v in self.speculative.items())]
        for adapter in self.model.get("adapters", ()):
            lines += ["", f"[[models.{table}.adapters]]", *(f"{k} = {toml_value(v)}" for k, v in adapter.items())]
        lines += [f"# not mapped: {note}" for note in self.notes]
        return "\n".join(lines).lstrip("\n") + "\n"


class ArgsError(ValueError):
    """A flag's value is not what llama-server takes either."""


def parse(args: Sequence[str]) -> Imported:
    """llama-server arguments -> what they mean in mullama's settings, and notes for the rest."""
    out = Imported()
    i = 0
    while i < len(args):
        flag, value = args[i], None
        if flag.startswith("--") and "=" in flag:
            flag, value = flag.split("=", 1)
        i += 1
        if flag in ("-a", "--alias"):
            value, i = _value(args, i, flag, value)
            out.name = value
        elif flag in FLAGS:
            if flag == "--lora-scaled" and value is None and _old_scaled(args[i:i + 2]):
                value, i = f"{args[i]}:{args[i + 1]}", i + 2  # the older two-argument form: PATH SCALE
            if flag in BARE:
                value = ""
            elif value is None and flag in SWITCHES and (i >= len(args) or args[i].startswith("-")):
                value = SWITCHES[flag]
            value, i = _value(args, i, flag, value)
            table, key, convert = FLAGS[flag]
            try:
                converted = convert(value)
            except ValueError:
                raise ArgsError(f"{flag}: cannot read {value!r}") from None
            target = getattr(out, table)
            if key in MOE_KEYS and out.moe_at is None:
                out.moe_at = len(out.model.get("tensor_overrides", []))
            if key in EXTENDS:
                converted = [*target.get(key, []), *converted]
            target[key] = [*target.get(key, []), converted] if key in LISTS else converted
        elif flag == "--lora-init-without-apply":
            out.lora_without_apply = True
        elif flag in BUILT_IN:
            out.notes.append(f"{flag} (not needed: {BUILT_IN[flag]})")
        elif flag.startswith("-"):
            takes_value = i < len(args) and not args[i].startswith("-") and value is None
            shown = f"{flag} {args[i]}" if takes_value else flag if value is None else f"{flag}={value}"
            i += 1 if takes_value else 0
            out.notes.append(f"{shown} ({UNSUPPORTED.get(flag, 'no equivalent')})")
        else:
            out.notes.append(f"{flag} (a stray argument)")
    _finish(out)
    return out


def _finish(out: Imported) -> None:
    """Scales to 0 under ``--lora-init-without-apply``; MoE shorthands written out where order matters; a
    draft model given with ``--spec-type`` n-gram drafters is tried after them (draft-simple added).

    mullama puts ``cpu_moe``/``n_cpu_moe``'s patterns after the explicit ``tensor_overrides``; llama-server
    keeps the command line's order, and the first match wins. When an ``-ot`` came after the shorthand, the
    shorthand's patterns are written out in its place, so an expert tensor goes where llama-server sends it.
    """
    spec = out.speculative
    if spec.get("draft_model") and "types" in spec and "draft-simple" not in spec["types"]:
        spec["types"] = [*spec["types"], "draft-simple"]
    if out.lora_without_apply:
        out.model["adapters"] = [{**a, "scale": 0.0} for a in out.model.get("adapters", [])]
    explicit = out.model.get("tensor_overrides", [])
    if out.moe_at is not None and len(explicit) > out.moe_at:
        moe = expand_overrides(argparse.Namespace(tensor_overrides=(), cpu_moe=out.model.pop("cpu_moe", False),
                                                  n_cpu_moe=out.model.pop("n_cpu_moe", 0)))
        out.model["tensor_overrides"] = [*explicit[:out.moe_at], *moe, *explicit[out.moe_at:]]


def _value(args: Sequence[str], i: int, flag: str, value: str | None) -> tuple[str, int]:
    if value is not None:
        return value, i
    if i >= len(args):
        raise ArgsError(f"{flag}: a value is missing")
    return args[i], i + 1


def add_import_args(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "import-args", help="print a llama-server command line as mullama TOML",
        description="Read llama-server arguments (after --) and print the equivalent mullama settings: server "
                    "settings, a [models.NAME] table and its sampling defaults; flags that cannot be mapped are "
                    "listed at the end with the reason.")
    p.add_argument("--name", help="the model's name in mullama (default: --alias, else the GGUF file's stem)")
    p.add_argument("args", nargs=argparse.REMAINDER, help="llama-server arguments, after --")
    p.set_defaults(func=_run)


def _run(a: argparse.Namespace) -> int:
    args = a.args[1:] if a.args[:1] == ["--"] else a.args
    try:
        imported = parse(args)
    except ArgsError as exc:
        print(f"mullama import-args: {exc}", file=sys.stderr)
        return 2
    name = a.name or imported.name or (Path(imported.model["path"]).stem.lower() if "path" in imported.model
                                       else "model")
    sys.stdout.write(imported.toml(name))
    return 0
