"""Typed errors of mullama, one class per cause.

The C++ engine raises these (``runner_ext/bind_errors.cpp`` maps each
``mullama::ErrorKind`` to the class of the same name here), and the HTTP
layers map them to status codes through ``status`` -- the single place where
an error becomes a status code. Importing this module never needs the C++
extension.
"""

from __future__ import annotations


class MullamaError(Exception):
    """Base of every error mullama raises on purpose."""

    status: int = 500
    type: str = "server_error"
    param: str | None = None        # the request parameter at fault (OpenAI's ``param``)
    retry_after: int | None = None  # seconds until a retry may succeed (sent as ``Retry-After``)

    def __init__(self, *args: object, param: str | None = None, retry_after: int | None = None) -> None:
        super().__init__(*args)
        if param is not None:
            self.param = param
        if retry_after is not None:
            self.retry_after = retry_after


class EngineError(MullamaError):
    """The engine failed for a reason not covered by a subclass."""


class InvalidArgument(EngineError, ValueError):
    """A parameter is out of range or of the wrong kind."""

    status = 400
    type = "invalid_request_error"


class ModelFileNotFound(EngineError, FileNotFoundError):
    """The model path does not exist, is not a file, or cannot be read."""

    status = 404
    type = "not_found_error"


class InvalidModelFile(EngineError, ValueError):
    """The file is not a GGUF model (bad magic)."""

    status = 422
    type = "invalid_model_error"


class CorruptModelFile(InvalidModelFile):
    """A GGUF file that is truncated or internally inconsistent."""


class UnsupportedModel(EngineError):
    """The architecture or a feature of the model is unknown to llama.cpp."""

    status = 422
    type = "invalid_model_error"


class OperationAborted(EngineError):
    """A progress callback asked a load or quantisation to stop."""

    status = 499
    type = "cancelled"


class OutOfMemory(EngineError, MemoryError):
    """An allocation for weights, KV cache or compute buffers failed."""

    status = 507
    type = "insufficient_memory"


class ContextOverflow(EngineError, ValueError):
    """Tokens do not fit the context window."""

    status = 400
    type = "context_length_exceeded"


class InvalidGrammar(EngineError, ValueError):
    """A GBNF grammar that does not parse."""

    status = 400
    type = "invalid_request_error"


class InvalidSchema(InvalidGrammar):
    """A JSON schema that cannot be turned into a grammar."""


class TemplateError(EngineError, ValueError):
    """The chat template is missing, does not parse, or fails on the messages."""

    status = 400
    type = "invalid_request_error"


class EngineClosed(EngineError):
    """Use of a model or context after close()."""

    status = 503
    type = "unavailable"


class ContextBusy(EngineError):
    """The context is driven by generate() or a Batcher; its KV cache is not yours to touch."""

    status = 409
    type = "invalid_state"


class DecodeError(EngineError):
    """llama_decode failed for a reason other than a full KV cache."""


class InvalidState(MullamaError):
    """An operation that the current lifecycle state does not allow (e.g. commit before alloc)."""

    status = 409
    type = "invalid_state"


class NotReady(MullamaError):
    """No model is loaded and ready to serve (or the runner is draining)."""

    status = 503
    type = "unavailable"


class QueueFull(MullamaError):
    """Every slot is busy and the wait queue is at its bound."""

    status = 429
    type = "queue_full"


class RequestNotFound(MullamaError):
    """No live request has this id."""

    status = 404
    type = "not_found_error"


class AssetError(MullamaError):
    """A pinned download (llama.cpp source, bundled model) failed or did not verify."""


# ---------------------------------------------------------------- supervisor


class ConfigError(MullamaError, ValueError):
    """The settings (file, environment or flags) do not validate; the message names the field."""

    status = 400
    type = "invalid_config"


class InvalidModelName(MullamaError, ValueError):
    """A model name with path parts, or otherwise not a name the catalog can hold."""

    status = 400
    type = "invalid_request_error"


class ModelNotFound(MullamaError, LookupError):
    """No model in the catalog has this name or alias."""

    status = 404
    type = "model_not_found"


class ModelUnavailable(MullamaError):
    """The model is listed but cannot be served (its file is not a valid GGUF, or its last load failed)."""

    status = 422
    type = "invalid_model_error"


class NoFit(MullamaError):
    """The model does not fit the free memory or the budget; the message says what and by how much."""

    status = 507
    type = "insufficient_memory"


class LoadFailed(MullamaError):
    """A runner could not load the model (alloc/commit failed after retries, or the runner died)."""

    status = 503
    type = "load_failed"


class LoadStalled(LoadFailed):
    """A load made no progress for ``load_timeout`` seconds; the runner was killed."""

    type = "load_stalled"


class RunnerCrashed(MullamaError):
    """The runner serving the request exited while the request was in flight."""

    status = 502
    type = "runner_crashed"


class RunnerError(MullamaError):
    """A runner answered with an error this side has no class for; status and type pass through."""

    def __init__(self, message: str, status: int = 502, type_: str = "runner_error") -> None:
        super().__init__(message)
        self.status, self.type = status, type_


class DeadlineExceeded(MullamaError):
    """The request's deadline passed before it could be dispatched."""

    status = 408
    type = "deadline_exceeded"


class Unauthorized(MullamaError):
    """Missing or wrong API key."""

    status = 401
    type = "authentication_error"


class Forbidden(MullamaError):
    """A request refused for where it comes from: a Host or an Origin the server does not serve."""

    status = 403
    type = "forbidden"

    def __init__(self, message: str, type_: str = "forbidden") -> None:
        super().__init__(message)
        self.type = type_


class UnsupportedMediaType(MullamaError):
    """A body that is not declared as JSON on a JSON route."""

    status = 415
    type = "unsupported_media_type"


class ShuttingDown(MullamaError):
    """The server is draining and takes no new requests."""

    status = 503
    type = "unavailable"


#: ErrorKind name (C++) -> class; used by the extension's exception translator.
ENGINE_ERRORS: dict[str, type[EngineError]] = {
    "Engine": EngineError,
    "ModelFileNotFound": ModelFileNotFound,
    "InvalidModelFile": InvalidModelFile,
    "CorruptModelFile": CorruptModelFile,
    "UnsupportedModel": UnsupportedModel,
    "Aborted": OperationAborted,
    "OutOfMemory": OutOfMemory,
    "ContextOverflow": ContextOverflow,
    "InvalidGrammar": InvalidGrammar,
    "InvalidSchema": InvalidSchema,
    "TemplateError": TemplateError,
    "InvalidArgument": InvalidArgument,
    "Closed": EngineClosed,
    "DecodeError": DecodeError,
    "Busy": ContextBusy,
}


# ---------------------------------------------------------------- model store (pull / rm / copy)


class PullError(MullamaError):
    """Pulling a model from the hub failed; the subclasses say why. A partial download is kept for resume."""

    status = 502
    type = "pull_failed"


class PullNotFound(PullError, LookupError):
    """The repository, revision, file or quantisation is not on the hub (the message lists what is)."""

    status = 404
    type = "model_not_found"


class PullUnauthorized(PullError):
    """The hub refused the request: no token, a wrong token (HF_TOKEN), or a gated repository."""

    status = 401
    type = "authentication_error"


class PullForbidden(PullUnauthorized):
    """The token is valid but may not read this repository (gated: accept its terms on the hub)."""

    status = 403
    type = "permission_error"


class HubUnavailable(PullError):
    """The hub answered 5xx, could not be reached, or dropped the transfer too often."""

    status = 502
    type = "hub_unavailable"


class DigestMismatch(PullError):
    """A downloaded file's sha256 is not the one the hub published; the file was removed."""

    status = 502
    type = "digest_mismatch"


class InsufficientStorage(PullError):
    """The models directory has less free space than the download needs (the message gives both)."""

    status = 507
    type = "insufficient_storage"


class ModelInUse(MullamaError):
    """The model is loaded (or loading); unload it first or delete with force."""

    status = 409
    type = "model_in_use"


class PresetConflict(MullamaError):
    """A preset the API may not make, replace or delete: the name is a model's, or the preset comes from the
    settings (change those in the config file)."""

    status = 409
    type = "conflict"


class ModelNotPulled(ModelNotFound):
    """A hub name (``ORG/REPO[:QUANT]``) that no pull manifest holds: a 404 as in Ollama (clients pull on
    it), and a ModelNotFound so that a lookup rescans the catalog first (a pull may just have finished).
    Other names with ``/`` are never looked up: they are InvalidModelName (400)."""
