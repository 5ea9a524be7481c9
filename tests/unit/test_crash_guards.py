"""Bad inputs that once took the whole interpreter down, each run in a fresh process.

Each snippet does one thing that must end in a typed exception (or work), and
prints OK when it does. A negative return code means the interpreter died
(-6 SIGABRT from a GGML_ASSERT, -11 SIGSEGV): that is an engine bug.
"""

from __future__ import annotations

import pytest

from helpers import describe, run_isolated

PRELUDE = """
import os, sys, tempfile
import gguf_factory
from mullama import engine
from mullama.core.errors import EngineError, InvalidArgument
tmp = tempfile.mkdtemp()
path = str(gguf_factory.write_tiny_llama(os.path.join(tmp, "tiny.gguf")))
cp = lambda **kw: engine.ContextParams(n_threads=2, n_threads_batch=2, **kw)
"""


def check(body: str) -> None:
    proc = run_isolated(PRELUDE + body)
    assert proc.returncode == 0 and "OK" in proc.stdout, describe(proc)


def test_isolated_runner_reports_a_clean_run():
    check("""
model = engine.Model(path, engine.ModelParams(n_gpu_layers=0))
print("OK")
""")


def test_sample_from_an_entry_without_logits_raises_instead_of_aborting():
    # ENGINE BUG: common_sampler_sample hits GGML_ASSERT(logits != nullptr) -> SIGABRT.
    check("""
model = engine.Model(path, engine.ModelParams(n_gpu_layers=0))
ctx = engine.Context(model, cp(n_ctx=64))
batch = engine.Batch(4)
batch.add(5, 0, 0, False)
batch.add(6, 1, 0, False)   # no entry asks for logits
ctx.decode(batch)
sampler = engine.Sampler(model, engine.SamplingParams(temperature=0))
try:
    sampler.sample(ctx, 0)
except InvalidArgument:
    print("OK")
""")


def test_sample_out_of_range_index_raises_instead_of_aborting():
    # ENGINE BUG: same GGML_ASSERT as above, for an index past the batch.
    check("""
model = engine.Model(path, engine.ModelParams(n_gpu_layers=0))
ctx = engine.Context(model, cp(n_ctx=64))
batch = engine.Batch(4)
batch.add(5, 0, 0, True)
ctx.decode(batch)
sampler = engine.Sampler(model, engine.SamplingParams(temperature=0))
try:
    sampler.sample(ctx, 7)
except InvalidArgument:
    print("OK")
""")


def test_vocab_only_model_loads_and_tokenizes():
    # ENGINE BUG: Model() reads llama_model_n_head() of a vocab-only model -> GGML_ABORT in llama-hparams.cpp.
    check("""
model = engine.Model(path, engine.ModelParams(n_gpu_layers=0, vocab_only=True))
assert model.detokenize(model.tokenize("the sea", False, False)) == "the sea"
print("OK")
""")


@pytest.mark.parametrize("n_seq_max", [3, 5])
def test_mean_pooling_context_with_n_seq_max_not_dividing_n_ubatch(n_seq_max):
    # ENGINE BUG: Context(embeddings=True, pooling="mean") with n_ubatch % n_seq_max != 0
    # aborts in graph reservation: GGML_ASSERT(ggml_can_mul_mat(a, b)).
    check(f"""
model = engine.Model(path, engine.ModelParams(n_gpu_layers=0))
try:
    ctx = engine.Context(model, cp(n_ctx=64, embeddings=True, n_seq_max={n_seq_max}))
    vecs = ctx.embed([[5, 6], [7, 8, 9], [10]])
    assert len(vecs) == 3
except InvalidArgument:
    pass  # refusing the combination is fine too
print("OK")
""")


def test_mean_pooling_context_with_n_seq_max_dividing_n_ubatch_works():
    check("""
model = engine.Model(path, engine.ModelParams(n_gpu_layers=0))
ctx = engine.Context(model, cp(n_ctx=64, embeddings=True, n_seq_max=3, n_batch=63, n_ubatch=63))
assert len(ctx.embed([[5, 6], [7, 8, 9], [10]])) == 3
print("OK")
""")


def test_huge_batch_capacity_raises_instead_of_crashing():
    # ENGINE BUG: Batch(2**31 - 1) -> llama_batch_init's unchecked mallocs -> SIGSEGV.
    check("""
try:
    engine.Batch(2**31 - 1)
except (InvalidArgument, MemoryError):
    print("OK")
""")


def test_two_threads_generating_on_one_context_never_crash():
    # ENGINE BUG: Context claims to be thread-safe, but two concurrent generate() calls on one
    # context interleave their decodes; one then samples an entry whose logits the other's batch
    # replaced -> GGML_ASSERT(logits != nullptr) in common_sampler_sample -> SIGABRT.
    # Acceptable outcomes: each call returns the solo result, or raises a typed EngineError.
    check("""
import threading
model = engine.Model(path, engine.ModelParams(n_gpu_layers=0))
ctx = engine.Context(model, cp(n_ctx=256))
prompt = [1, 259, 264, 107, 263]
params = engine.GenerateParams(max_tokens=16, ignore_eos=True, sampling=engine.SamplingParams(temperature=0))
reference = ctx.generate(model, [prompt], [params])[0].tokens
bad = []
def worker():
    for _ in range(10):
        try:
            tokens = ctx.generate(model, [prompt], [params])[0].tokens
            if tokens != reference:
                bad.append(tokens)
        except EngineError:
            pass
threads = [threading.Thread(target=worker) for _ in range(2)]
for t in threads: t.start()
for t in threads: t.join(120)
assert not bad, f"{len(bad)} runs returned a wrong continuation"
print("OK")
""")
