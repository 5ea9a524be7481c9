#!/usr/bin/env python3
"""Check that a wheel's shared objects use no instructions beyond the x86 level each one claims.

A distributable wheel (scripts/build_wheel.sh) holds ggml's CPU backend once per x86 level
(``libggml-cpu-<variant>.so``), loaded at run time by the CPU it runs on, and everything else
(``_engine``, ``libllama``, ``libggml``, ``libggml-base``) for the x86-64 baseline (SSE2). A variant
that used an instruction beyond its level, or a baseline library that used any vector extension,
would die with SIGILL on an older CPU: this disassembles every ELF object (binutils' objdump)
and reports each one's highest instruction-set features against what its name allows.

    python scripts/check_wheel_isa.py dist/mullama-*.whl      # or a directory of .so files
Exit status 1 when any object uses more than it may.
"""

from __future__ import annotations

import re
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

_SSE42 = {"SSSE3", "SSE4.1", "SSE4.2"}
_HASWELL = _SSE42 | {"AVX", "F16C", "FMA", "AVX2", "BMI2"}
_AVX512 = _HASWELL | {"AVX512"}
# ggml's x86 variants (ggml/src/CMakeLists.txt, GGML_CPU_ALL_VARIANTS) and what each may use.
ALLOWED: dict[str, set[str]] = {
    "x64": set(),
    "sse42": _SSE42,
    "sandybridge": _SSE42 | {"AVX"},
    "ivybridge": _SSE42 | {"AVX", "F16C"},
    "piledriver": _SSE42 | {"AVX", "F16C", "FMA"},
    "haswell": _HASWELL,
    "alderlake": _HASWELL | {"AVX_VNNI"},
    "skylakex": _AVX512, "cannonlake": _AVX512, "cascadelake": _AVX512, "icelake": _AVX512,
    "cooperlake": _AVX512, "zen4": _AVX512,
    "sapphirerapids": _AVX512 | {"AMX"},
}

_SSSE3 = {"pshufb", "phaddw", "phaddd", "phaddsw", "phsubw", "phsubd", "phsubsw", "pmaddubsw", "pmulhrsw",
          "palignr", "psignb", "psignw", "psignd", "pabsb", "pabsw", "pabsd"}
_SSE41 = {"pmulld", "pminsd", "pmaxsd", "pminud", "pmaxud", "pminsb", "pmaxsb", "pminuw", "pmaxuw", "pblendw",
          "pblendvb", "blendps", "blendpd", "blendvps", "blendvpd", "ptest", "roundps", "roundss", "roundsd",
          "roundpd", "pextrb", "pextrd", "pextrq", "pinsrb", "pinsrd", "pinsrq", "extractps", "insertps", "dpps",
          "dppd", "packusdw", "pcmpeqq", "mpsadbw", "phminposuw", "movntdqa", "pmuldq"}
_SSE42_OPS = {"pcmpgtq", "pcmpestri", "pcmpestrm", "pcmpistri", "pcmpistrm", "crc32", "popcnt"}
_BMI2 = {"shlx", "sarx", "shrx", "pdep", "pext", "bzhi", "mulx", "rorx"}
_AVX2_OPS = {"vpbroadcastb", "vpbroadcastw", "vpbroadcastd", "vpbroadcastq", "vbroadcasti128", "vperm2i128",
             "vinserti128", "vextracti128", "vpermq", "vpermd", "vpermpd", "vpermps", "vpmaskmovd", "vpmaskmovq",
             "vpsllvd", "vpsllvq", "vpsrlvd", "vpsrlvq", "vpsravd", "vpblendd"}
_AVX1_VP = {"vpermilps", "vpermilpd", "vperm2f128", "vptest"}  # AVX, though "vp..." on ymm registers
_VNNI = {"vpdpbusd", "vpdpbusds", "vpdpwssd", "vpdpwssds"}
_NOT_AVX = {"verr", "verw", "vmcall", "vmlaunch", "vmresume", "vmxoff", "vmread", "vmwrite", "vmptrld"}
_PREFIXES = {"lock", "rep", "repz", "repnz", "repe", "repne", "notrack", "bnd", "data16", "addr32", "cs", "ds",
             "ss", "es", "fs", "gs", "{vex}", "{vex3}", "{evex}", "rex", "rex.w", "rex.W"}
_EVEX = re.compile(r"%zmm|%k[0-7]\b|\{%k|%[xy]mm(1[6-9]|2\d|3[01])\b")


def features(mnemonic: str, operands: str, vex: bool) -> set[str]:
    """The instruction-set features one instruction needs (empty: the x86-64 baseline)."""
    base = mnemonic.rstrip("lqwb") if mnemonic.startswith(("popcnt", "crc32")) else mnemonic
    if mnemonic.startswith(("tile", "tdp", "ldtilecfg", "sttilecfg")):
        return {"AMX"}
    if _EVEX.search(operands):
        return {"AVX512"}
    if mnemonic in _BMI2 or mnemonic.rstrip("lq") in _BMI2:
        return {"BMI2"}
    if mnemonic.startswith("v") and mnemonic not in _NOT_AVX:
        if mnemonic in _VNNI:
            return {"AVX_VNNI"} if vex else {"AVX512"}
        if mnemonic.startswith(("vfmadd", "vfmsub", "vfnmadd", "vfnmsub")):
            return {"FMA"}
        if mnemonic.startswith(("vcvtph2ps", "vcvtps2ph")):
            return {"F16C"}
        if mnemonic in _AVX2_OPS or mnemonic.startswith(("vpgather", "vgather")) or (
                mnemonic.startswith("vp") and "%ymm" in operands and mnemonic not in _AVX1_VP):
            return {"AVX2"}
        return {"AVX"}
    if base in _SSE42_OPS:
        return {"SSE4.2"}
    if mnemonic in _SSE41 or mnemonic.startswith(("pmovzx", "pmovsx")):
        return {"SSE4.1"}
    if mnemonic in _SSSE3:
        return {"SSSE3"}
    return set()


def used(path: Path) -> dict[str, int]:
    """Feature -> how many instructions in ``path`` need it."""
    out = subprocess.run(["objdump", "-d", "--no-show-raw-insn", str(path)], capture_output=True, text=True,
                         check=True).stdout
    counts: dict[str, int] = {}
    for line in out.splitlines():
        parts = line.split("\t", 1)
        if len(parts) != 2 or not parts[0].rstrip().endswith(":"):
            continue
        tokens = parts[1].split()
        vex = False
        while tokens and tokens[0] in _PREFIXES:
            vex = vex or tokens[0].startswith("{vex")
            tokens.pop(0)
        if not tokens:
            continue
        for feat in features(tokens[0], " ".join(tokens[1:]), vex):
            counts[feat] = counts.get(feat, 0) + 1
    return counts


def allowed_for(name: str) -> tuple[str, set[str]]:
    if m := re.fullmatch(r"libggml-cpu-(.+)\.so", name):
        if m.group(1) not in ALLOWED:
            raise SystemExit(f"{name}: a CPU variant this check does not know; add it to ALLOWED")
        return m.group(1), ALLOWED[m.group(1)]
    return "x86-64 baseline", set()


def check(root: Path) -> list[tuple[str, str, dict[str, int], set[str]]]:
    rows = []
    for path in sorted(p for p in root.rglob("*.so*") if p.is_file() and p.read_bytes()[:4] == b"\x7fELF"):
        claim, allowed = allowed_for(path.name)
        counts = used(path)
        rows.append((path.name, claim, counts, set(counts) - allowed))
    return rows


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print(__doc__, file=sys.stderr)
        return 2
    target = Path(argv[0])
    with tempfile.TemporaryDirectory() as tmp:
        if target.suffix == ".whl":
            with zipfile.ZipFile(target) as whl:
                whl.extractall(tmp)
            target = Path(tmp)
        rows = check(target)
    if not rows:
        print(f"no shared objects in {argv[0]}", file=sys.stderr)
        return 1
    bad = 0
    for name, claim, counts, beyond in rows:
        used_text = " ".join(f"{k}:{v}" for k, v in sorted(counts.items())) or "baseline only"
        verdict = f"BEYOND ITS LEVEL: {', '.join(sorted(beyond))}" if beyond else "ok"
        bad += bool(beyond)
        print(f"{name:<40} {claim:<16} {verdict:<10} {used_text}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
