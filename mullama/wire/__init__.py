"""Wire types between the supervisor and a runner (msgspec Structs).

The only module both sides import; a wire type lives here and nowhere else.
JSON over localhost HTTP; completions stream as NDJSON: ``CompletionChunk``
lines, then one ``CompletionFinal``. Errors are ``ErrorBody``.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec

from mullama.wire.base import Bytes, Count, FinishReason, HealthStatus, Int32, LoadOp, Seed, TokenId, _Wire
from mullama.wire.views import AdapterInfo, Counters, DeviceMemory, KvView, SlotView, StatsView

__all__ = ["AdapterInfo", "Count", "Counters", "DeviceMemory", "FinishReason", "HealthStatus", "Int32", "KvView",
           "LoadOp", "Seed", "SlotView", "StatsView", "TokenId"]


class ErrorDetail(_Wire, kw_only=True):
    type: str
    message: str


class ErrorBody(_Wire, kw_only=True):
    error: ErrorDetail


class Health(_Wire, kw_only=True):
    status: HealthStatus
    progress: float = 0.0
    error: str | None = None
    phase: str = ""             # finer than status: "allocated", "prefetching", ...
    model: str | None = None
    loop_stalled_ms: float = 0.0  # how long the decode loop has been in its current pass (0: asleep, idle)


class AdapterSpec(_Wire, kw_only=True):
    """A LoRA adapter to load: its GGUF file, its default scale and the name requests may use."""

    path: str
    scale: float = 1.0            # requests that name no adapters get every adapter at its default scale
    name: str = ""                # "": the file name without .gguf


class LoraRef(_Wire, kw_only=True):
    """One adapter of a request's set (llama-server's ``lora: [{id, scale}]``; ``name`` is ours)."""

    id: int | None = None
    name: str | None = None
    scale: float = 1.0


class LoadParams(_Wire, kw_only=True):
    """Everything fit/alloc need; commit and close ignore the fields."""

    op: LoadOp
    model: str | None = None    # GGUF path (fit, alloc)
    n_ctx: Count = 4096           # total context; each slot gets n_ctx / n_parallel unless kv_unified
    n_parallel: Count = 4
    n_batch: Count = 2048
    n_ubatch: Count = 512
    n_threads: Count = 0
    n_threads_batch: Count = 0
    n_gpu_layers: Int32 = -1
    main_gpu: Count = 0
    split_mode: Literal["none", "layer", "row"] = "layer"
    tensor_split: list[float] = []
    use_mmap: bool = True
    use_mlock: bool = False
    flash_attn: Literal["auto", "on", "off"] = "auto"
    type_k: str = "f16"
    type_v: str = "f16"
    kv_unified: bool = True
    warmup: bool = True
    chat_template: str = ""     # Jinja source or a llama.cpp built-in template's name; "": the GGUF's own
    offload_kqv: bool = True    # the KV cache on the GPU with its layers (llama-server's --no-kv-offload: false)
    swa_full: bool = False      # full-size cache for sliding-window attention layers
    rope_scaling: Literal["", "none", "linear", "yarn", "longrope"] = ""  # "": the model's
    rope_freq_base: float = 0.0   # 0: the model's
    rope_freq_scale: float = 0.0  # 0: the model's
    yarn_orig_ctx: Count = 0      # 0: the model's training context
    check_tensors: bool = False   # validate the weights' data while loading
    pooling: Literal["mean", "cls", "last"] = "mean"  # how embeddings pool a text's token vectors
    kv_overrides: list[str] = []  # GGUF metadata overrides, KEY=TYPE:VALUE (llama-server's --override-kv)
    tensor_overrides: list[str] = []  # REGEX=DEVICE: the weights whose names match go to that device's memory (-ot)
    numa: Literal["off", "distribute", "isolate", "numactl"] = "off"
    context_shift: bool = False   # a stream that fills its slot's context drops the older half of it and goes on
    adapters: list[AdapterSpec] = []  # LoRA adapters loaded with the model
    adapter_turn: Annotated[int, msgspec.Meta(ge=1, le=100_000)] = 16  # steps a LoRA set runs while others wait
    cache_ram: Bytes = 0          # bytes of host memory for prefix caches out of the KV cache (0: none)
    cores: list[Count] = []       # the CPU cores all the runner's threads may run on (affinity); []: any
    rpc_servers: list[str] = []   # RPC workers (host:port) whose devices come before the GPUs in tensor_split
    speculative: Speculative | None = None  # None: no speculative decoding


class Speculative(_Wire, kw_only=True):
    """The batcher's speculative decoding (config.speculative.SpeculativeSettings); types []: off."""

    types: list[str] = []
    n_max: Annotated[int, msgspec.Meta(ge=1, le=256)] = 16
    n_min: Annotated[int, msgspec.Meta(ge=0, le=256)] = 0
    ngram_n: Annotated[int, msgspec.Meta(ge=1, le=1024)] = 12
    ngram_m: Annotated[int, msgspec.Meta(ge=1, le=1024)] = 48
    ngram_min_hits: Annotated[int, msgspec.Meta(ge=1, le=65535)] = 1
    draft_model: str = ""         # draft-simple's GGUF file
    draft_gpu_layers: Annotated[int, msgspec.Meta(ge=-1)] = -1
    draft_p_min: Annotated[float, msgspec.Meta(ge=0.0, le=1.0)] = 0.0


class CpuAllotment(_Wire, kw_only=True):
    """``POST /cpu``: the cores the runner's threads may run on and its decode thread pools' sizes
    (the supervisor re-divides the cores as models load and unload)."""

    cores: list[Count] = []       # []: every core the runner started with
    threads: Annotated[int, msgspec.Meta(ge=1, le=1024)]
    threads_batch: Annotated[int, msgspec.Meta(ge=1, le=1024)]


class CacheRam(_Wire, kw_only=True):
    """``GET`` / ``POST /cache-ram``: the runner's limit for prefix caches in host memory (the supervisor shares
    host memory among its runners: hardware/cache_ram.py) and what they hold once it applies (parked caches
    beyond a lower limit go at once)."""

    limit: Bytes                  # 0: idle caches stay in the KV cache
    held: Bytes = 0               # answers only: bytes parked now


class LoadResult(_Wire, kw_only=True):
    op: LoadOp
    status: HealthStatus
    devices: list[DeviceMemory] = []
    n_ctx: Count = 0
    n_layer: int = 0
    duration_ms: float = 0.0


class _Chat(msgspec.Struct, kw_only=True, forbid_unknown_fields=True, omit_defaults=True):
    """Chat wire types: encoded as OpenAI writes them (absent, not null), for llama.cpp's chat layer."""


class ToolFunction(_Chat, kw_only=True):
    name: str
    arguments: str                # JSON text, as the model wrote it


class ToolCall(_Chat, kw_only=True):
    id: str
    type: Literal["function"] = "function"
    function: ToolFunction


class ChatMessage(_Chat, kw_only=True):
    role: str                     # system | user | assistant | tool
    content: str | None = None
    tool_calls: list[ToolCall] | None = None   # assistant: the calls it made
    tool_call_id: str | None = None            # tool: the call this result answers
    name: str | None = None                    # tool: the function's name
    reasoning_content: str | None = None       # assistant: its thinking (templates that reason may render it)


class FunctionSpec(_Chat, kw_only=True):
    name: str
    description: str = ""
    parameters: dict[str, Any] | None = None   # JSON schema of the arguments


class Tool(_Chat, kw_only=True):
    type: Literal["function"] = "function"
    function: FunctionSpec


ToolChoice = Literal["auto", "none", "required"]
#: DRY's default sequence breakers (llama.cpp's)
DRY_BREAKERS = ("\n", ":", "\"", "*")

#: How reasoning ("thinking") is read out of a chat answer, as llama-server's ``--reasoning-format``:
#: ``none`` leaves it in the content, ``auto``/``deepseek`` split it into ``reasoning_content``,
#: ``deepseek-legacy`` splits it and also keeps it in the content while streaming.
ReasoningFormat = Literal["none", "auto", "deepseek", "deepseek-legacy"]
TopLogprobs = Annotated[int, msgspec.Meta(ge=0, le=20)]


class ChatDelta(_Wire, kw_only=True):
    """What a chunk added to the parsed message: text, reasoning, or a piece of tool call ``tool_index``."""

    content: str = ""
    reasoning_content: str = ""
    tool_index: int = -1          # >= 0: a tool-call delta (``name`` on its first, then ``arguments`` pieces)
    name: str = ""
    arguments: str = ""


class ChatResult(_Wire, kw_only=True):
    """The whole answer as the chat template's parser reads it."""

    content: str
    reasoning_content: str = ""
    tool_calls: list[ToolFunction] = []


class CompletionRequest(_Wire, kw_only=True):
    """Exactly one of ``prompt``, ``tokens`` or ``messages`` (rendered with the model's chat template)."""

    prompt: str | None = None
    tokens: list[TokenId] | None = None
    messages: list[ChatMessage] | None = None
    tools: list[Tool] | None = None      # with messages: rendered by the template, calls parsed from the output
    tool_choice: ToolChoice = "auto"
    parallel_tool_calls: bool = False
    reasoning_format: ReasoningFormat | None = None  # None: the runner's default (settings.reasoning_format)
    think: bool | None = None            # the template's enable_thinking; None: the template's default (on)
    reasoning_budget: Annotated[int, msgspec.Meta(ge=-1, le=2**31 - 1)] = -1  # thinking tokens, then the end
                                         # tag is forced (llama-server's reasoning_budget_tokens; -1: no limit)
    logprobs: bool = False               # each generated token's log-probability (and top_logprobs others)
    top_logprobs: TopLogprobs = 0
    n: Annotated[int, msgspec.Meta(ge=1, le=128)] = 1  # choices sampled from one prefill of the prompt
    id: str | None = None
    stream: bool = True
    max_tokens: Int32 = 128
    temperature: float = 0.8
    top_k: Int32 = 40
    top_p: float = 0.95
    min_p: float = 0.05
    repeat_penalty: float = 1.0
    repeat_last_n: Int32 = 64
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    seed: Seed = -1
    # llama.cpp's other samplers (llama-server's names and defaults); off unless set
    typical_p: float = 1.0
    min_keep: Count = 0
    mirostat: Annotated[int, msgspec.Meta(ge=0, le=2)] = 0
    mirostat_tau: float = 5.0
    mirostat_eta: float = 0.1
    xtc_probability: float = 0.0
    xtc_threshold: float = 0.1
    dry_multiplier: float = 0.0
    dry_base: float = 1.75
    dry_allowed_length: Count = 2
    dry_penalty_last_n: Annotated[int, msgspec.Meta(ge=-1, le=2**31 - 1)] = -1
    dry_sequence_breakers: list[str] = msgspec.field(default_factory=lambda: list(DRY_BREAKERS))
    top_n_sigma: float = -1.0
    dynatemp_range: float = 0.0
    dynatemp_exponent: float = 1.0
    samplers: list[str] = []          # the chain's order by llama.cpp's names; []: llama.cpp's default
    stop: list[str] = []
    ignore_eos: bool = False
    grammar: str | None = None
    json_schema: dict | bool | None = None
    logit_bias: dict[str, float] | list[tuple[TokenId, float]] = {}
    repeat_limit: Count | None = None   # None: the runner's default
    add_special: bool = True            # BOS etc. when tokenizing `prompt`
    n_keep: Annotated[int, msgspec.Meta(ge=-1, le=2**31 - 1)] = 0  # prompt tokens a context shift keeps (-1: all)
    speculative: bool = True            # False: no drafts for this request when the model speculates
    lora: list[LoraRef] | None = None   # the adapter set; None: every loaded adapter at its default scale
    chat_template: str | None = None    # Jinja source or a built-in name for this request (presets); None: the model's
    parse_special: bool = True          # <|im_start|> in `prompt` becomes the special token


class CompletionStats(_Wire, kw_only=True):
    prompt_tokens: int
    cached_tokens: int
    completion_tokens: int
    queue_ms: float
    prefill_ms: float
    ttft_ms: float
    decode_ms: float
    total_ms: float
    inter_token_ms_p50: float
    inter_token_ms_p95: float
    slot: int
    pauses: int
    swaps: int
    evicted_tokens: int = 0     # cached tokens of its slot it threw away (did not share)
    kv_preemptions: int = 0     # times it gave way (swapped to host memory) because the shared KV cache was full
    adapters: str = ""          # its LoRA set, id:scale,... ("": none)
    adapter_waits: int = 0      # decode steps it sat out while requests with other adapters ran
    context_shifts: int = 0     # times its context filled and the older half was dropped
    draft_tokens: int = 0       # speculative tokens drafted for it and verified ...
    draft_accepted: int = 0     # ... of which the model accepted


class TopLogprob(_Wire, kw_only=True):
    token: int
    text: str                    # the token's text (replacement characters where it is part of a UTF-8 sequence)
    bytes: list[int]             # its raw bytes
    logprob: float


class TokenLogprob(_Wire, kw_only=True):
    """One generated token: its log-probability under the model (before sampling), and the most likely."""

    token: int
    text: str
    bytes: list[int]
    logprob: float
    top: list[TopLogprob] = []


class ChoiceEnd(_Wire, kw_only=True):
    """How one choice of an ``n > 1`` request ended."""

    index: int
    finish_reason: FinishReason
    stop_string: str | None = None
    error: str | None = None
    completion_tokens: int = 0
    message: ChatResult | None = None        # a parsed chat: content, reasoning and tool calls
    content: str = ""                        # not streamed: the choice's whole text
    logprobs: list[TokenLogprob] | None = None  # not streamed, when asked for


class CompletionChunk(_Wire, kw_only=True, omit_defaults=True):
    """Written without ``deltas`` unless the chat is parsed (tools, a template that reasons); ``index`` is
    the choice (``n > 1``); ``end`` says that choice ended with this chunk (the last choice to end ends
    with the ``CompletionFinal`` instead)."""

    id: str
    content: str
    tokens: list[int]
    index: int = 0
    deltas: list[ChatDelta] | None = None   # a parsed chat: the changes this chunk made
    logprobs: list[TokenLogprob] | None = None  # one per token, when asked for
    end: ChoiceEnd | None = None


class CompletionFinal(_Wire, kw_only=True):
    id: str
    content: str                 # all text when not streaming; the held-back tail when streaming
    tokens: list[int]
    done: bool = True
    finish_reason: FinishReason
    stop_string: str | None = None
    error: str | None = None
    stats: CompletionStats
    deltas: list[ChatDelta] | None = None   # a parsed chat, streamed: the last parsed changes
    message: ChatResult | None = None       # a parsed chat: content, reasoning and tool calls
    logprobs: list[TokenLogprob] | None = None  # of ``tokens``, when asked for
    index: int = 0                          # the choice this frame ends (n > 1: the last one to end)
    choices: list[ChoiceEnd] | None = None  # n > 1: every choice's end, by index (``stats`` sums their tokens)


class CountResult(_Wire, kw_only=True):
    """``POST /count``: the prompt of a ``CompletionRequest`` as /completion would evaluate it."""

    prompt_tokens: int


class EmbeddingRequest(_Wire, kw_only=True):
    input: str | list[str]


class EmbeddingResult(_Wire, kw_only=True):
    embeddings: list[list[float]]
    prompt_tokens: int


class TokenizeRequest(_Wire, kw_only=True):
    content: str
    add_special: bool = True
    parse_special: bool = False


class TokenizeResult(_Wire, kw_only=True):
    tokens: list[int]


class DetokenizeRequest(_Wire, kw_only=True):
    tokens: list[TokenId]


class DetokenizeResult(_Wire, kw_only=True):
    content: str


class ApplyTemplateRequest(_Wire, kw_only=True):
    messages: list[ChatMessage]
    add_generation_prompt: bool = True


class ApplyTemplateResult(_Wire, kw_only=True):
    prompt: str


class ControlRequest(_Wire, kw_only=True):
    id: str


class ControlResult(_Wire, kw_only=True):
    id: str
    ok: bool


encoder = msgspec.json.Encoder()


def decode(body: bytes, kind: type[msgspec.Struct]):
    """Parse ``body`` as ``kind``; raises msgspec.ValidationError / DecodeError."""
    return msgspec.json.decode(body, type=kind)
