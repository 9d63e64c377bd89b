"""Where the package keeps downloaded models and built engines."""
from __future__ import annotations

import os
from pathlib import Path


def user_cache_dir(subdir: str, override_env: str) -> Path:
    """``$<override_env>`` when set, else ``${XDG_CACHE_HOME:-~/.cache}/openpixel_ros/<subdir>``."""
    explicit = os.environ.get(override_env)
    if explicit:
        return Path(explicit).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache).expanduser() / "openpixel_ros" / subdir


def model_dir() -> Path:
    """Where fetched and converted models live (not the packaged default): ``$OPENPIXEL_MODEL_DIR``,
    else ``${XDG_CACHE_HOME:-~/.cache}/openpixel_ros/models``."""
    return user_cache_dir("models", "OPENPIXEL_MODEL_DIR")
