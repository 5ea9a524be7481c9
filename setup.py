"""Builds mullama._engine: llama.cpp (static) + the pybind11 module in runner_ext/.

CMake does the work in a persistent build directory (``build/cmake-<backend>-<py>``)
with ccache when available, so a second ``pip install -e .`` relinks at most.

Environment:
  MULLAMA_LLAMA_CPP_DIR   build against this llama.cpp checkout instead of the pinned source
  MULLAMA_CUDA=1          enable the CUDA backend (CMAKE_CUDA_ARCHITECTURES overridable)
  MULLAMA_CPU_VARIANTS=1  distributable build: ggml's CPU backend once per x86 level, chosen at run time
                          (shared libraries next to the extension; scripts/build_wheel.sh sets it)
  MULLAMA_NATIVE=1        -march=native (this CPU only; the default is portable: SSE4.2/AVX/AVX2/FMA/F16C/BMI2,
                          no AVX-512 or AMX, which some VMs report but do not run)
  MULLAMA_BUILD_DIR       build directory (default: build/cmake-<backend>-<python>)
  MULLAMA_BUILD_JOBS      parallel compile jobs (default: all cores)
  MULLAMA_CMAKE_ARGS      extra arguments passed to CMake's configure step
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

ROOT = Path(__file__).resolve().parent


def truthy(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in {"1", "on", "yes", "true"}


def llama_cpp_dir() -> Path:
    override = os.environ.get("MULLAMA_LLAMA_CPP_DIR")
    if override:
        path = Path(override).expanduser().resolve()
        if not (path / "include" / "llama.h").exists():
            sys.exit(f"MULLAMA_LLAMA_CPP_DIR={override} is not a llama.cpp source tree (no include/llama.h)")
        return path
    sys.path.insert(0, str(ROOT / "scripts"))
    import fetch_llama_cpp  # noqa: E402

    try:
        return fetch_llama_cpp.fetch(ROOT / "third_party" / "llama.cpp", fetch_llama_cpp.default_cache())
    except fetch_llama_cpp.FetchError as exc:
        sys.exit(f"fetching llama.cpp failed: {exc}")


def cuda_cmake_args() -> list[str]:
    """CMake arguments for the CUDA backend on this machine.

    - CMAKE_CUDA_ARCHITECTURES from the environment (default: native when a GPU
      is visible, else CMake's default).
    - A toolkit without cuBLAS (as on machines with only nvcc) can use the PyPI
      wheel ``nvidia-cublas``: its headers and libraries are passed to CMake.
    - Without an NVIDIA driver (no libcuda.so) VMM is turned off so that nothing
      links against the driver; a build with a driver keeps it on.
    """
    args = []
    if os.environ.get("CMAKE_CUDA_ARCHITECTURES"):
        args.append(f"-DCMAKE_CUDA_ARCHITECTURES={os.environ['CMAKE_CUDA_ARCHITECTURES']}")
    nvcc = shutil.which("nvcc")
    toolkit = Path(os.path.realpath(nvcc)).parent.parent if nvcc else Path("/usr/local/cuda")
    if not (toolkit / "include" / "cublas_v2.h").exists():
        try:
            import nvidia  # namespace package of the nvidia-* wheels

            roots = [Path(p) for p in nvidia.__path__]
        except ImportError:
            roots = []
        for root in roots:
            for sub in ("cu13", "cu12", "cublas"):
                inc, lib = root / sub / "include", root / sub / "lib"
                libs = sorted(lib.glob("libcublas.so*")), sorted(lib.glob("libcublasLt.so*"))
                if (inc / "cublas_v2.h").exists() and all(libs):
                    args += [f"-DCUDA_cublas_LIBRARY={libs[0][0]}", f"-DCUDA_cublasLt_LIBRARY={libs[1][0]}",
                             f"-DCMAKE_CUDA_FLAGS=-I{inc}", f"-DCMAKE_CXX_FLAGS=-I{inc}"]
                    print(f"mullama: using cuBLAS from {root / sub}")
                    break
            else:
                continue
            break
        else:
            print("mullama: cuBLAS not found in the CUDA toolkit; `pip install nvidia-cublas` provides it")
    if not any(Path(d).glob("libcuda.so*") for d in ("/usr/lib/x86_64-linux-gnu", "/usr/lib64", "/usr/lib/wsl/lib",
                                                     "/usr/local/nvidia/lib64", "/usr/local/cuda/compat")):
        print("mullama: no NVIDIA driver library (libcuda.so): building with GGML_CUDA_NO_VMM=ON")
        args.append("-DGGML_CUDA_NO_VMM=ON")
    return args


def isa_args(native: bool) -> list[str]:
    """The portable x86 instruction sets, set explicitly both ways. ggml derives their defaults from
    GGML_NATIVE only when the options are first cached, so a build directory that was once native kept
    them OFF after switching back: a scalar build, several times slower, with other numerics (measured
    here: a greedy tool choice came out differently from a fresh clone's)."""
    import platform

    if platform.machine().lower() not in ("x86_64", "amd64"):
        return []
    value = "OFF" if native else "ON"
    return [f"-DGGML_{isa}={value}" for isa in ("SSE42", "AVX", "AVX2", "BMI2", "FMA", "F16C")]


class CMakeExtension(Extension):
    def __init__(self, name: str) -> None:
        super().__init__(name, sources=[])


class CMakeBuild(build_ext):
    def build_extension(self, ext: Extension) -> None:
        import pybind11

        src = llama_cpp_dir()
        cuda = truthy("MULLAMA_CUDA")
        variants = truthy("MULLAMA_CPU_VARIANTS")
        if variants and truthy("MULLAMA_NATIVE"):
            sys.exit("MULLAMA_CPU_VARIANTS and MULLAMA_NATIVE exclude each other: variants are for other machines")
        py_tag = f"py{sys.version_info.major}{sys.version_info.minor}"
        kind = ("cuda" if cuda else "cpu") + ("-variants" if variants else "")
        build_dir = Path(os.environ.get("MULLAMA_BUILD_DIR") or ROOT / "build" / f"cmake-{kind}-{py_tag}")
        build_dir.mkdir(parents=True, exist_ok=True)
        commit = "custom" if os.environ.get("MULLAMA_LLAMA_CPP_DIR") else "0c1e570"

        args = [
            f"-DLLAMA_CPP_DIR={src}",
            f"-DPython_EXECUTABLE={sys.executable}",
            f"-Dpybind11_DIR={pybind11.get_cmake_dir()}",
            "-DCMAKE_BUILD_TYPE=Release",
            f"-DMULLAMA_LLAMA_CPP_COMMIT={commit}",
            f"-DLLAMA_BUILD_COMMIT={commit}",
            f"-DGGML_CUDA={'ON' if cuda else 'OFF'}",
            f"-DGGML_NATIVE={'ON' if truthy('MULLAMA_NATIVE') else 'OFF'}",
            f"-DMULLAMA_CPU_VARIANTS={'ON' if variants else 'OFF'}",
            *([] if variants else isa_args(truthy("MULLAMA_NATIVE"))),
        ]
        if cuda:
            args += cuda_cmake_args()
        if shutil.which("ninja") and not (build_dir / "Makefile").exists():
            args += ["-G", "Ninja"]
        ccache = shutil.which("ccache")
        if ccache:
            # GGML_CCACHE would do the same for ggml only; do it for every target.
            args += [f"-DCMAKE_C_COMPILER_LAUNCHER={ccache}", f"-DCMAKE_CXX_COMPILER_LAUNCHER={ccache}",
                     "-DGGML_CCACHE=OFF"]
            if cuda:
                args.append(f"-DCMAKE_CUDA_COMPILER_LAUNCHER={ccache}")
        args += shlex.split(os.environ.get("MULLAMA_CMAKE_ARGS", ""))

        env = dict(os.environ)
        env.setdefault("CCACHE_BASEDIR", str(ROOT))
        env.setdefault("CCACHE_NOHASHDIR", "1")
        subprocess.run(["cmake", "-S", str(ROOT / "runner_ext"), "-B", str(build_dir), *args], check=True, env=env)
        jobs = os.environ.get("MULLAMA_BUILD_JOBS") or str(os.cpu_count() or 2)
        subprocess.run(["cmake", "--build", str(build_dir), "--target", "_engine", "-j", jobs], check=True, env=env)

        suffix = sysconfig.get_config_var("EXT_SUFFIX")
        built = build_dir / f"_engine{suffix}"
        if not built.exists():
            sys.exit(f"CMake did not produce {built}")
        dest = Path(self.get_ext_fullpath(ext.name))
        dest.parent.mkdir(parents=True, exist_ok=True)
        install(built, dest)
        for stale in [*dest.parent.glob("libggml*.so*"), *dest.parent.glob("libllama*.so*")]:
            stale.unlink()  # a variants build's libraries, when this build is the static one (or their old copies)
        if variants:
            # The shared libraries under the names the loader asks for (libllama.so.0, ...; not the
            # development symlinks) and ggml's backend modules (libggml-cpu-haswell.so, ...,
            # libggml-cuda.so), all next to the extension.
            for lib in sorted((build_dir / "bin").glob("lib*.so*")):
                if re.fullmatch(r"lib.+\.so\.\d+", lib.name) or (lib.suffix == ".so" and not lib.is_symlink()):
                    install(lib.resolve(), dest.parent / lib.name)


def install(src: Path, dest: Path) -> None:
    """Copy, then rename: a process that has the old file mapped keeps its inode (overwriting in
    place would pull the pages from under it)."""
    tmp = dest.with_name(dest.name + ".tmp")
    shutil.copy2(src, tmp)
    os.replace(tmp, dest)


setup(ext_modules=[CMakeExtension("mullama._engine")], cmdclass={"build_ext": CMakeBuild})
