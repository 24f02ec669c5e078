"""DuckDB extensions from their PyPI packages, loaded from the package's file, never downloaded.

Each `duckdb-extension-<name>` package is pinned to the `duckdb` release in
pyproject.toml and ships the extension built for exactly that release under
`extensions/v<duckdb version>/<name>.duckdb_extension`. Loading that file by
path means no connection ever needs `INSTALL` or the network (which an
offline machine does not have, and which would run code nobody pinned).
"""

from __future__ import annotations

import importlib.resources
from pathlib import Path

import duckdb

# Connection settings that stop DuckDB from fetching or loading extensions on its own.
NO_AUTOLOAD: dict[str, str | bool | int | float | list[str]] = {
    "autoinstall_known_extensions": False,
    "autoload_known_extensions": False,
}


def package_of(name: str) -> str:
    """The PyPI package that ships extension `name` (`excel` -> `duckdb-extension-excel`)."""
    return f"duckdb-extension-{name}"


def extension_path(name: str) -> Path:
    """The file of DuckDB extension `name` shipped by its `duckdb-extension-<name>` package.

    Raises:
        RuntimeError: the package is missing or was built for another DuckDB release;
            the message holds the exact install command.
    """
    fix = f"run: pip install '{package_of(name)}=={duckdb.__version__}'"
    try:
        root = importlib.resources.files(f"duckdb_extension_{name}")
    except ModuleNotFoundError:
        raise RuntimeError(f"the DuckDB {name} extension is not installed; {fix}") from None
    path = Path(str(root)) / "extensions" / f"v{duckdb.__version__}" / f"{name}.duckdb_extension"
    if not path.exists():
        raise RuntimeError(f"{name} for DuckDB {duckdb.__version__} is not installed; {fix}")
    return path


def load_extension(conn: duckdb.DuckDBPyConnection, name: str) -> None:
    """Load extension `name` into `conn` from its package's file.

    Raises:
        RuntimeError: the package is missing (see `extension_path`).
        duckdb.Error: DuckDB refused the file.
    """
    path = str(extension_path(name))
    conn.execute("LOAD '" + path.replace("'", "''") + "'")
