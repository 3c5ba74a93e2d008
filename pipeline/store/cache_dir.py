"""Where the cache lives, without torch: planning finds trained networks there."""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs

#: Environment variable that moves the cache (tests, shared scratch disks, CI).
ENV_CACHE_DIR = "STYLIZE_CACHE_DIR"


def default_cache_dir() -> Path:
    """Return ``$STYLIZE_CACHE_DIR`` if set (and not empty), else the per-user cache folder."""
    env = os.environ.get(ENV_CACHE_DIR)
    if env:
        return Path(env).expanduser()
    return platformdirs.user_cache_path("stylize")
