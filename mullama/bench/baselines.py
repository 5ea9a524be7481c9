"""Build llama.cpp's own tools (llama-bench, llama-server, ...) as baselines.

They are built from the same llama.cpp source as ``mullama._engine`` and with
the same code-generation flags (Release = -O3 -DNDEBUG, GGML_NATIVE as setup.py sets it: OFF
unless MULLAMA_NATIVE=1, static libraries compiled -fPIC; upstream's default OpenMP), so that a comparison
measures mullama, not the compiler. The build directory persists
(``build/baseline``); only the requested targets are built and a second call
is a Ninja no-op.

    python benchmarks/baselines.py                     # llama-bench
    python benchmarks/baselines.py llama-bench llama-server
    python benchmarks/baselines.py --print-path llama-bench

From Python::

    from mullama.bench.baselines import build_tools   # or: from baselines import ... (benchmarks/)
    paths = build_tools(["llama-bench"])              # {"llama-bench": Path(...)}

It lives in the package because ``mullama bench --baseline llama-server`` builds at run time; it
needs the repository checkout (third_party/llama.cpp, scripts/), i.e. an editable install.

Environment:
  MULLAMA_LLAMA_CPP_DIR     build this llama.cpp checkout instead of third_party/llama.cpp
  MULLAMA_BASELINE_BUILD_DIR  build directory (default: build/baseline, build/baseline-noomp without OpenMP)
  MULLAMA_BASELINE_OPENMP   0: build without OpenMP (as --no-openmp)
  MULLAMA_BUILD_JOBS        parallel compile jobs (default: all cores)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

from mullama.core.errors import MullamaError

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_BUILD_DIR = ROOT / "build" / "baseline"
PINNED_COMMIT = "0c1e570"
KNOWN_TARGETS = ("llama-bench", "llama-server", "llama-cli", "llama-batched-bench", "llama-perplexity")
STAMP = "mullama-baseline.json"


class BaselineError(MullamaError, RuntimeError):
    """The baseline tools could not be built."""


def cpu_model() -> str:
    """The CPU's model name (for the conditions line of every benchmark report)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def llama_cpp_dir() -> Path:
    """The llama.cpp source: $MULLAMA_LLAMA_CPP_DIR, else third_party/llama.cpp (fetched when missing)."""
    override = os.environ.get("MULLAMA_LLAMA_CPP_DIR")
    if override:
        path = Path(override).expanduser().resolve()
        if not (path / "include" / "llama.h").exists():
            raise BaselineError(
                f"MULLAMA_LLAMA_CPP_DIR={override} is not a llama.cpp source tree (no include/llama.h)"
            )
        return path
    path = ROOT / "third_party" / "llama.cpp"
    if not (path / "include" / "llama.h").exists():
        print(f"baselines: {path} missing, running scripts/fetch_llama_cpp.py", file=sys.stderr)
        subprocess.run([sys.executable, str(ROOT / "scripts" / "fetch_llama_cpp.py")], check=True)
        if not (path / "include" / "llama.h").exists():
            raise BaselineError(f"scripts/fetch_llama_cpp.py did not produce {path}")
    return path


def llama_cpp_commit() -> str:
    return "custom" if os.environ.get("MULLAMA_LLAMA_CPP_DIR") else PINNED_COMMIT


def default_openmp() -> bool:
    return os.environ.get("MULLAMA_BASELINE_OPENMP", "1").strip().lower() not in {"0", "off", "no", "false"}


def default_build_dir(openmp: bool) -> Path:
    override = os.environ.get("MULLAMA_BASELINE_BUILD_DIR")
    if override:
        return Path(override)
    return DEFAULT_BUILD_DIR if openmp else DEFAULT_BUILD_DIR.with_name("baseline-noomp")


def cmake_args(src: Path, commit: str, openmp: bool = True) -> list[str]:
    """Configure arguments; the code-generation flags mirror setup.py + runner_ext/CMakeLists.txt."""
    args = [
        f"-DGGML_OPENMP={'ON' if openmp else 'OFF'}",
        "-DCMAKE_BUILD_TYPE=Release",
        f"-DGGML_NATIVE={'ON' if os.environ.get('MULLAMA_NATIVE', '').strip().lower() in {'1', 'on', 'yes', 'true'} else 'OFF'}",
        "-DBUILD_SHARED_LIBS=OFF",
        # runner_ext sets CMAKE_POSITION_INDEPENDENT_CODE=ON: llama/ggml there are compiled -fPIC.
        "-DCMAKE_POSITION_INDEPENDENT_CODE=ON",
        "-DLLAMA_OPENSSL=OFF",
        "-DLLAMA_BUILD_UI=OFF",
        "-DLLAMA_USE_PREBUILT_UI=OFF",  # otherwise llama-server's build downloads a web UI
        "-DLLAMA_BUILD_TESTS=OFF",
        "-DLLAMA_BUILD_EXAMPLES=OFF",
        "-DLLAMA_BUILD_TOOLS=ON",
        "-DLLAMA_BUILD_SERVER=ON",
        "-DLLAMA_ALL_WARNINGS=OFF",  # as runner_ext (warnings only, no codegen effect)
        "-DGGML_BUILD_TESTS=OFF",
        "-DGGML_BUILD_EXAMPLES=OFF",
        f"-DLLAMA_BUILD_COMMIT={commit}",  # the sdist has no .git; as setup.py
    ]
    if shutil.which("ninja"):
        args += ["-G", "Ninja"]
    ccache = shutil.which("ccache")
    if ccache:
        args += [
            f"-DCMAKE_C_COMPILER_LAUNCHER={ccache}",
            f"-DCMAKE_CXX_COMPILER_LAUNCHER={ccache}",
            "-DGGML_CCACHE=OFF",
        ]
    return args


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("CCACHE_BASEDIR", str(ROOT))
    env.setdefault("CCACHE_NOHASHDIR", "1")
    return env


def _run_logged(cmd: list[str], log: Path, verbose: bool) -> None:
    with log.open("a") as fh:
        fh.write(f"$ {' '.join(cmd)}\n")
        fh.flush()
        if verbose:
            proc = subprocess.Popen(
                cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=_env()
            )
            assert proc.stdout is not None
            for line in proc.stdout:
                fh.write(line)
                sys.stderr.write(line)
            rc = proc.wait()
        else:
            rc = subprocess.run(cmd, stdout=fh, stderr=subprocess.STDOUT, env=_env(), check=False).returncode
    if rc != 0:
        tail = "".join(log.read_text(errors="replace").splitlines(keepends=True)[-40:])
        raise BaselineError(f"command failed ({rc}): {' '.join(cmd)}\n--- last lines of {log} ---\n{tail}")


def configure(build_dir: Path | None = None, *, openmp: bool | None = None, verbose: bool = False) -> Path:
    """Configure the build directory once; reconfigure only if the source or the arguments changed."""
    openmp = default_openmp() if openmp is None else openmp
    build_dir = Path(build_dir or default_build_dir(openmp)).resolve()
    src = llama_cpp_dir()
    commit = llama_cpp_commit()
    args = cmake_args(src, commit, openmp)
    wanted = {"source": str(src), "args": args}
    stamp = build_dir / STAMP
    current = None
    if stamp.exists():
        try:
            current = json.loads(stamp.read_text())
        except ValueError:
            current = None
    if current == wanted and (build_dir / "CMakeCache.txt").exists():
        return build_dir
    if current is not None and current.get("source") != wanted["source"] and build_dir.exists():
        # CMake cannot move a build directory to another source tree.
        shutil.rmtree(build_dir)
    build_dir.mkdir(parents=True, exist_ok=True)
    log = build_dir / "baseline-build.log"
    t0 = time.perf_counter()
    _run_logged(["cmake", "-S", str(src), "-B", str(build_dir), *args], log, verbose)
    stamp.write_text(json.dumps(wanted, indent=1))
    print(f"baselines: configured {build_dir} in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    return build_dir


def build_tools(
    targets: list[str] | tuple[str, ...] = ("llama-bench",),
    build_dir: Path | None = None,
    *,
    jobs: int | None = None,
    openmp: bool | None = None,
    verbose: bool = False,
) -> dict[str, Path]:
    """Build ``targets`` (only those) and return {target: binary path}. Prints the build time.

    ``openmp``: ggml's thread backend (None: $MULLAMA_BASELINE_OPENMP, default on = upstream's default).
    """
    targets = list(targets)
    if not targets:
        raise BaselineError("no targets")
    build_dir = configure(build_dir, openmp=openmp, verbose=verbose)
    jobs = jobs or int(os.environ.get("MULLAMA_BUILD_JOBS") or os.cpu_count() or 2)
    log = build_dir / "baseline-build.log"
    t0 = time.perf_counter()
    cmd = ["cmake", "--build", str(build_dir), "-j", str(jobs)]
    for t in targets:
        cmd += ["--target", t]
    _run_logged(cmd, log, verbose)
    elapsed = time.perf_counter() - t0
    paths = {}
    for t in targets:
        exe = build_dir / "bin" / t
        if not exe.exists():
            raise BaselineError(f"the build did not produce {exe}")
        paths[t] = exe
    print(f"baselines: built {', '.join(targets)} in {elapsed:.1f} s ({build_dir})", file=sys.stderr)
    return paths


def build_tool(target: str = "llama-bench", build_dir: Path | None = None, **kw) -> Path:
    return build_tools([target], build_dir, **kw)[target]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "targets",
        nargs="*",
        default=["llama-bench"],
        help=f"CMake targets to build (default llama-bench; e.g. {', '.join(KNOWN_TARGETS)})",
    )
    ap.add_argument(
        "--build-dir",
        type=Path,
        default=None,
        help="default: build/baseline, or build/baseline-noomp with --no-openmp",
    )
    ap.add_argument("-j", "--jobs", type=int, default=None)
    ap.add_argument(
        "--no-openmp",
        dest="openmp",
        action="store_false",
        default=None,
        help="ggml's own thread pool instead of OpenMP, as the extension (build/baseline-noomp)",
    )
    ap.add_argument("-v", "--verbose", action="store_true", help="stream the CMake/Ninja output")
    ap.add_argument("--print-path", action="store_true", help="print only the binary paths on stdout")
    args = ap.parse_args(argv)
    try:
        paths = build_tools(
            args.targets, args.build_dir, jobs=args.jobs, openmp=args.openmp, verbose=args.verbose
        )
    except (BaselineError, subprocess.CalledProcessError) as exc:
        print(f"baselines: {exc}", file=sys.stderr)
        return 1
    for t, p in paths.items():
        print(p if args.print_path else f"{t}: {p}")
    return 0
