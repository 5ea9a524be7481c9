"""A model named on the command line, found without a server: a GGUF path, or a name of the catalog the
settings' models directories (and the bundled model) make."""

from __future__ import annotations

from pathlib import Path

from mullama.core.errors import InvalidArgument, MullamaError


def resolve(source: str, config_path: str | None = None) -> tuple[Path, str | None, list[Path]]:
    """(the file, its family or None for a bare path, the models directories)."""
    from mullama import config

    settings = config.load_settings({}, config_path=config_path)
    dirs = [Path(d).expanduser() for d in settings.models_dirs]
    path = Path(source).expanduser()
    if path.is_file():
        return path, None, dirs
    from mullama.models import assets
    from mullama.models.catalog import Catalog
    from mullama.serving.supervisor import BUNDLED_FAMILY

    bundled = assets.default_model_path(download=False)
    extra = [(BUNDLED_FAMILY, bundled, "bundled")] if settings.bundled_model and bundled.exists() else []
    try:
        entry = Catalog.scan(dirs, aliases=settings.aliases, extra=extra).resolve(source)
    except MullamaError as exc:  # the catalog's own error says which models exist
        raise InvalidArgument(f"{source!r} is neither a file nor a model of the catalog: {exc}") from None
    return Path(entry.path), entry.family, dirs
