"""The model store: pull GGUF models from a Hugging Face hub, with progress, resume and verification.

``names`` (pull names, quantisation choice; pure), ``manifest`` (one JSON record per served name),
``hub`` (repository listing through huggingface_hub), ``download`` (one file: resume, sha256,
atomic rename, locks), ``store`` (the ``Store``: pulls shared between callers, rm, copy). This
package imports nothing heavy at import time: the catalog reads manifests through it.
"""
