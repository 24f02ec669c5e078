"""Provider API keys: the environment variable first, else a `.env` file.

The `.env` file holds `KEY=value` lines; quotes, comments and an `export `
prefix are understood (python-dotenv's parser, imported only when a file is
read). A key is never logged.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path


def resolve_key(
    env_name: str, env_file: str | Path | None, environ: Mapping[str, str] | None = None
) -> str | None:
    """The key named `env_name` from the environment, else from `env_file`; None when neither has it.

    An empty value counts as unset, and an unreadable or missing file as holding nothing.
    """
    if not env_name:
        return None
    value = (os.environ if environ is None else environ).get(env_name, "").strip()
    if value:
        return value
    if not env_file:
        return None
    path = Path(env_file)
    try:
        if not path.is_file():
            return None
        from dotenv import dotenv_values

        values = dotenv_values(path)
    except (OSError, UnicodeDecodeError):
        return None
    found = (values.get(env_name) or "").strip()
    return found or None
