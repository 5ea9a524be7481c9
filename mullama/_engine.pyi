"""Type stubs of the C++ extension (runner_ext/bind_*.cpp). Errors: mullama.core.errors."""

from collections.abc import Callable, Mapping, Sequence
from os import PathLike

import numpy as np
import numpy.typing as npt

LLAMA_CPP_COMMIT: str
ENGINE_ERRORS: dict[str, type[Exception]]

class ModelParams:
    def __init__(
        self, *, n_gpu_layers: int = -1, main_gpu: int = 0, split_mode: str = "layer",
        tensor_split: Sequence[float] = (), use_mmap: bool = True, use_mlock: bool = False,
        vocab_only: bool = False, check_tensors: bool = False, kv_overrides: Sequence[str] = (),
        tensor_overrides: Sequence[str] = (),
    ) -> None: ...
    kv_overrides: list[str]  # GGUF metadata overrides, KEY=TYPE:VALUE (llama-server's --override-kv)
    tensor_overrides: list[str]  # REGEX=BUFFER_TYPE (llama-server's -ot)
    n_gpu_layers: int
    main_gpu: int
    split_mode: str
    tensor_split: list[float]
    use_mmap: bool
    use_mlock: bool
    vocab_only: bool
    check_tensors: bool

class ModelInfo:
    path: str
    architecture: str
    name: str
    description: str
    n_params: int
    file_size: int
    tensor_bytes: int
    n_layer: int
    n_ctx_train: int
    n_embd: int
    n_head: int
    n_head_kv: int
    n_vocab: int
    quantization: str
    chat_template: str
    bos: int
    eos: int
    eot: int
    add_bos: bool
    has_encoder: bool
    is_recurrent: bool

class Model:
    def __init__(
        self, path: str | PathLike[str], params: ModelParams = ..., *,
        progress: Callable[[float], bool | None] | None = None,
    ) -> None: ...
    def close(self) -> None: ...
    @property
    def closed(self) -> bool: ...
    def __enter__(self) -> Model: ...
    def __exit__(self, *args: object) -> None: ...
    @property
    def info(self) -> ModelInfo: ...
    def metadata(self) -> dict[str, str]: ...
    def tokenize(self, text: str, add_special: bool = True, parse_special: bool = False) -> list[int]: ...
    def detokenize(self, tokens: Sequence[int], remove_special: bool = False, unparse_special: bool = False) -> str: ...
    def token_to_piece(self, token: int, special: bool = True) -> bytes: ...
    def is_eog(self, token: int) -> bool: ...
    def apply_chat_template(
        self, messages: Sequence[Mapping[str, str]], add_generation_prompt: bool = True, template: str = ""
    ) -> str: ...

class ContextParams:
    def __init__(
        self, *, n_ctx: int = 4096, n_batch: int = 2048, n_ubatch: int = 512, n_seq_max: int = 1,
        n_threads: int = 0, n_threads_batch: int = 0, flash_attn: str = "auto", type_k: str = "f16",
        type_v: str = "f16", embeddings: bool = False, pooling: str = "mean", kv_unified: bool = True,
        offload_kqv: bool = True, swa_full: bool = False, rope_scaling: str = "", rope_freq_base: float = 0.0,
        rope_freq_scale: float = 0.0, yarn_orig_ctx: int = 0,
    ) -> None: ...
    swa_full: bool
    rope_scaling: str  # "": the model's | none | linear | yarn | longrope
    rope_freq_base: float  # 0: the model's
    rope_freq_scale: float
    yarn_orig_ctx: int
    n_ctx: int
    n_batch: int
    n_ubatch: int
    n_seq_max: int
    n_threads: int
    n_threads_batch: int
    flash_attn: str
    type_k: str
    type_v: str
    embeddings: bool
    pooling: str
    kv_unified: bool
    offload_kqv: bool

class DeviceMemory:
    device: str
    description: str
    type: str
    free: int
    total: int
    model: int
    context: int
    compute: int

class Batch:
    def __init__(self, capacity: int, n_seq_max: int = 1) -> None: ...
    def add(self, token: int, pos: int, seq: int = 0, logits: bool = False) -> int: ...
    def clear(self) -> None: ...
    def __len__(self) -> int: ...
    @property
    def capacity(self) -> int: ...

class SamplingParams:
    def __init__(
        self, *, temperature: float = 0.8, top_k: int = 40, top_p: float = 0.95, min_p: float = 0.05,
        typical_p: float = 1.0, repeat_penalty: float = 1.0, repeat_last_n: int = 64,
        presence_penalty: float = 0.0, frequency_penalty: float = 0.0, seed: int = -1,
        logit_bias: Sequence[tuple[int, float]] = (), grammar: str = "", json_schema: str = "",
        reasoning_budget: int = -1,
    ) -> None: ...
    def with_seed(self, seed: int) -> SamplingParams: ...
    def with_extras(
        self, *, min_keep: int = 0, mirostat: int = 0, mirostat_tau: float = 5.0, mirostat_eta: float = 0.1,
        xtc_probability: float = 0.0, xtc_threshold: float = 0.1, dry_multiplier: float = 0.0,
        dry_base: float = 1.75, dry_allowed_length: int = 2, dry_penalty_last_n: int = -1,
        dry_sequence_breakers: Sequence[str] = ("\n", ":", '"', "*"), top_n_sigma: float = -1.0,
        dynatemp_range: float = 0.0, dynatemp_exponent: float = 1.0, samplers: Sequence[str] = (),
    ) -> SamplingParams: ...
    temperature: float
    top_k: int
    top_p: float
    min_p: float
    typical_p: float
    repeat_penalty: float
    repeat_last_n: int
    presence_penalty: float
    frequency_penalty: float
    seed: int
    reasoning_budget: int  # thinking tokens before the end tag is forced (-1: no limit; with_chat sets the tags)
    reasoning_start: str
    reasoning_end: list[str]
    logit_bias: list[tuple[int, float]]
    grammar: str
    json_schema: str

class GenerateParams:
    def __init__(
        self, *, max_tokens: int = 128, stop: Sequence[str] = (), ignore_eos: bool = False,
        sampling: SamplingParams = ..., n_probs: int = -1,
    ) -> None: ...
    max_tokens: int
    stop: list[str]
    ignore_eos: bool
    n_probs: int  # >= 0: the Batcher reports each token's logprob and the n_probs most likely (Event.probs)
    sampling: SamplingParams

class GenerateResult:
    text: str
    tokens: list[int]
    finish_reason: str  # stop | length | context_full | cancelled
    stop_string: str
    prompt_tokens: int
    completion_tokens: int
    prompt_ms: float
    ttft_ms: float
    decode_ms: float

class Context:
    def __init__(self, model: Model, params: ContextParams = ...) -> None: ...
    def close(self) -> None: ...
    @property
    def closed(self) -> bool: ...
    def __enter__(self) -> Context: ...
    def __exit__(self, *args: object) -> None: ...
    @property
    def params(self) -> ContextParams: ...
    @property
    def n_ctx(self) -> int: ...
    @property
    def n_ctx_seq(self) -> int: ...
    @property
    def n_vocab(self) -> int: ...
    def decode(self, batch: Batch) -> None: ...
    def logits(self, index: int) -> npt.NDArray[np.float32]: ...
    def kv_clear(self) -> None: ...
    def kv_seq_rm(self, seq: int, p0: int = -1, p1: int = -1) -> bool: ...
    def kv_seq_cp(self, src: int, dst: int, p0: int = -1, p1: int = -1) -> None: ...
    def kv_seq_keep(self, seq: int) -> None: ...
    def kv_seq_pos_min(self, seq: int) -> int: ...
    def kv_seq_pos_max(self, seq: int) -> int: ...
    def kv_cells_used(self) -> int: ...
    def seq_state_save(self, seq: int) -> bytes: ...
    def seq_state_load(self, data: bytes, seq: int) -> None: ...
    def embed(self, inputs: Sequence[Sequence[int]]) -> list[list[float]]: ...
    def memory(self) -> list[DeviceMemory]: ...
    def set_threads(self, n_threads: int, n_threads_batch: int) -> None: ...
    def generate(
        self, model: Model, prompts: Sequence[Sequence[int]], params: Sequence[GenerateParams], *,
        on_token: Callable[[int, int, str], bool | None] | None = None,
    ) -> list[GenerateResult]: ...

class Sampler:
    chain: str  # the samplers as llama.cpp built them, e.g. "logits -> ?penalties -> ... -> dist"
    def __init__(self, model: Model, params: SamplingParams) -> None: ...
    def sample(self, context: Context, index: int) -> int: ...
    def accept(self, token: int) -> None: ...
    def reset(self) -> None: ...
    @property
    def seed(self) -> int: ...

class FitReport:
    devices: list[DeviceMemory]
    n_ctx: int
    n_layer: int
    n_gpu_layers: int
    file_size: int

class QuantizeParams:
    def __init__(
        self, *, type: str = "Q4_K_M", n_threads: int = 0, allow_requantize: bool = False,
        quantize_output: bool = True, pure: bool = False, imatrix: str | PathLike[str] | None = None,
    ) -> None: ...
    type: str
    n_threads: int
    allow_requantize: bool
    quantize_output: bool
    pure: bool
    imatrix: str  # "" when none

def fit(path: str | PathLike[str], model_params: ModelParams = ..., context_params: ContextParams = ...) -> FitReport: ...
def quantize(
    input: str | PathLike[str], output: str | PathLike[str], params: QuantizeParams = ..., *,
    progress: Callable[[float], bool | None] | None = None,
) -> None: ...
def quantize_types() -> list[str]: ...
def json_schema_to_grammar(schema: str) -> str: ...
def set_log_sink(sink: Callable[[int, str], None] | None, min_level: int = 3) -> None: ...
def devices() -> list[dict[str, object]]: ...
def system_info() -> str: ...
# The CPU backend this process runs: {"variant": "haswell" | ... | "built-in", "path": str, "dynamic": bool,
# "features": {"AVX2": "1", ...}}. A CPU-variants build picks the best variant this CPU runs, or the one
# MULLAMA_CPU_VARIANT names (a name this build lacks or this CPU cannot run raises InvalidArgumentError).
def cpu_backend() -> dict[str, object]: ...
def supports_gpu_offload() -> bool: ...
def max_devices() -> int: ...
# NUMA placement for this process (off | distribute | isolate | numactl); once, before loading.
def numa_init(strategy: str) -> None: ...
# Buffer types a tensor override may name (CPU, CUDA0, ...).
def buffer_type_names() -> list[str]: ...
def max_parallel_sequences() -> int: ...
# The Batcher's slot choice: (slot index or -1 when none is free, cached prompt tokens to reuse).
def choose_slot(
    prompt: Sequence[int], caches: Sequence[Sequence[int]], busy: Sequence[bool], last_used: Sequence[int]
) -> tuple[int, int]: ...
