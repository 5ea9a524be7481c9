"""fit() predicts the real allocation without making it."""

from __future__ import annotations

import psutil
import pytest

from helpers import MiB, ctx_params
from mullama import engine

TOLERANCE = 0.10  # fit must be within 10% of what a real context reports
#: fit() loads metadata only; its RSS growth must stay far below the ~200 MiB it predicts.
FIT_RSS_LIMIT = 16 * MiB


def _totals(devices):
    return {d.device: (d.model, d.context, d.compute) for d in devices}


@pytest.mark.parametrize("n_ctx", [512, 2048])
def test_fit_estimate_within_ten_percent_of_real_allocation(smollm_path, n_ctx):
    mparams = engine.ModelParams()
    cparams = ctx_params(n_ctx=n_ctx)
    report = engine.fit(smollm_path, mparams, cparams)
    assert report.n_ctx == n_ctx
    assert report.n_layer == 30
    assert report.file_size == smollm_path.stat().st_size

    with engine.Model(str(smollm_path), mparams) as model, engine.Context(model, cparams) as ctx:
        real = _totals(ctx.memory())
    predicted = _totals(report.devices)
    assert predicted.keys() == real.keys()
    for device, (r_model, r_ctx, r_compute) in real.items():
        p_model, p_ctx, p_compute = predicted[device]
        assert p_model == pytest.approx(r_model, rel=TOLERANCE), f"{device} weights"
        assert p_ctx == pytest.approx(r_ctx, rel=TOLERANCE), f"{device} KV cache"
        assert p_compute == pytest.approx(r_compute, rel=TOLERANCE), f"{device} compute"
        assert p_model + p_ctx + p_compute == pytest.approx(r_model + r_ctx + r_compute, rel=TOLERANCE)
    assert sum(sum(v) for v in real.values()) > 100 * MiB  # a real, non-trivial allocation


def test_fit_kv_cache_grows_with_n_ctx(smollm_path):
    small = engine.fit(smollm_path, engine.ModelParams(), ctx_params(n_ctx=512))
    large = engine.fit(smollm_path, engine.ModelParams(), ctx_params(n_ctx=4096))
    kv = lambda r: sum(d.context for d in r.devices)  # noqa: E731
    assert kv(large) == pytest.approx(8 * kv(small), rel=0.01)


def test_fit_allocates_nothing_noticeable(smollm_path):
    proc = psutil.Process()
    engine.fit(smollm_path, engine.ModelParams(), ctx_params(n_ctx=512))  # warm-up (backend, code pages)
    before = proc.memory_info().rss
    report = engine.fit(smollm_path, engine.ModelParams(), ctx_params(n_ctx=8192))
    growth = proc.memory_info().rss - before
    predicted = sum(d.model + d.context + d.compute for d in report.devices)
    assert predicted > 200 * MiB
    assert growth < FIT_RSS_LIMIT, (
        f"fit grew RSS by {growth / MiB:.1f} MiB (predicts {predicted / MiB:.0f} MiB)"
    )


def test_fit_reports_host_last(smollm_path):
    report = engine.fit(smollm_path, engine.ModelParams(n_gpu_layers=0), ctx_params(n_ctx=512))
    assert report.devices[-1].device == "CPU"
    assert report.n_gpu_layers == 0


def test_fit_errors_are_typed(tmp_path, tiny_path):
    import gguf_factory
    from mullama.core.errors import CorruptModelFile, InvalidArgument, ModelFileNotFound

    with pytest.raises(ModelFileNotFound):
        engine.fit(tmp_path / "missing.gguf")
    with pytest.raises(CorruptModelFile):
        engine.fit(gguf_factory.write_truncated(tiny_path, tmp_path / "cut.gguf", "header"))
    with pytest.raises(InvalidArgument):
        engine.fit(tiny_path, engine.ModelParams(), ctx_params(n_seq_max=0))


def _overcommit_refuses_huge_allocations() -> bool:
    try:
        with open("/proc/sys/vm/overcommit_memory") as fh:
            return fh.read().strip() in ("0", "2")
    except OSError:
        return False


@pytest.mark.skipif(not _overcommit_refuses_huge_allocations(), reason="needs vm.overcommit_memory 0 or 2")
def test_impossible_context_is_predicted_by_fit_and_raises_out_of_memory(smollm, smollm_path):
    from mullama.core.errors import OutOfMemory

    n_ctx = 1 << 24  # the largest n_ctx accepted: a ~360 GiB KV cache for SmolLM2
    report = engine.fit(smollm_path, engine.ModelParams(), ctx_params(n_ctx=n_ctx))
    predicted_kv = sum(d.context for d in report.devices)
    assert predicted_kv > psutil.virtual_memory().total
    with pytest.raises(OutOfMemory):
        engine.Context(smollm, ctx_params(n_ctx=n_ctx))
    with pytest.raises(MemoryError):  # OutOfMemory is a MemoryError
        engine.Context(smollm, ctx_params(n_ctx=n_ctx))
