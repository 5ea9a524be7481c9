"""Supervisor-side modules import without the C++ extension."""

from __future__ import annotations

from helpers import describe, run_isolated


def test_errors_and_assets_import_without_the_extension():
    proc = run_isolated(
        """
        import sys
        sys.modules["mullama._engine"] = None  # any import of the extension now fails
        import mullama.errors, mullama.assets
        assert mullama.errors.ENGINE_ERRORS["Closed"] is mullama.errors.EngineClosed
        assert mullama.assets.SMOLLM2_135M_Q4_1.filename.endswith(".gguf")
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
    from mullama import errors

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
    from mullama import _engine, errors

    assert _engine.ENGINE_ERRORS is errors.ENGINE_ERRORS


def test_the_whole_supervisor_imports_and_builds_its_app_without_the_extension():
    proc = run_isolated(
        """
        import sys
        sys.modules["mullama._engine"] = None
        import mullama.app, mullama.api, mullama.cli, mullama.cli_client, mullama.lifecycle
        import mullama.runner_client, mullama.runner_process, mullama.openapi_spec
        from mullama import config
        app = mullama.app.create_app(config.load_settings({}, env={}))
        assert len(app.router.routes()) > 10
        assert "mullama.engine" not in sys.modules and "mullama.runner.engine" not in sys.modules
        print("OK")
        """
    )
    assert proc.returncode == 0, describe(proc)
    assert "OK" in proc.stdout
