"""Supervisor-side modules import without the C++ extension."""

from __future__ import annotations

from helpers import describe, run_isolated


def test_errors_and_assets_import_without_the_extension():
    proc = run_isolated(
        """
        import sys
        sys.modules["mullama._engine"] = None  # any import of the extension now fails
        import mullama.core.errors, mullama.models.assets
        assert mullama.core.errors.ENGINE_ERRORS["Closed"] is mullama.core.errors.EngineClosed
        assert mullama.models.assets.SMOLLM2_135M_Q4_1.filename.endswith(".gguf")
        try:
            import mullama.engine
        except ImportError:
            print("engine-blocked")
        print("OK")
        """
    )
    assert proc.returncode == 0, describe(proc)
    assert "engine-blocked" in proc.stdout  # the block really was in effect
    assert "OK" in proc.stdout


def test_error_classes_map_to_status_codes():
    from mullama.core import errors

    assert issubclass(errors.CorruptModelFile, errors.InvalidModelFile)
    assert issubclass(errors.InvalidSchema, errors.InvalidGrammar)
    assert issubclass(errors.InvalidArgument, ValueError)
    assert issubclass(errors.ModelFileNotFound, FileNotFoundError)
    assert issubclass(errors.OutOfMemory, MemoryError)
    for cls in errors.ENGINE_ERRORS.values():
        assert issubclass(cls, errors.EngineError)
    assert errors.ContextOverflow.status == 400
    assert errors.ModelFileNotFound.status == 404
    assert errors.EngineClosed.status == 503


def test_extension_uses_the_same_error_classes():
    from mullama import _engine
    from mullama.core import errors

    assert _engine.ENGINE_ERRORS is errors.ENGINE_ERRORS


def test_the_whole_supervisor_imports_and_builds_its_app_without_the_extension():
    """Every module of the supervisor's side (all of mullama but the runner process and the engine)."""
    proc = run_isolated(
        """
        import importlib, pkgutil, sys
        sys.modules["mullama._engine"] = None
        import mullama
        skip = ("mullama.runner", "mullama.engine", "mullama._engine", "mullama.cli.__main__")
        for info in pkgutil.walk_packages(mullama.__path__, "mullama."):
            if not info.name.startswith(skip):
                importlib.import_module(info.name)
        from mullama import config
        from mullama.http.app import create_app
        app = create_app(config.load_settings({}, env={}))
        assert len(app.router.routes()) > 10
        assert "mullama.engine" not in sys.modules and "mullama.runner.service" not in sys.modules
        print("OK")
        """
    )
    assert proc.returncode == 0, describe(proc)
    assert "OK" in proc.stdout
