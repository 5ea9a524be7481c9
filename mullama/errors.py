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
