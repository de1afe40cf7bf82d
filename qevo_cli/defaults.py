"""Where the bundled default model and data live, and where qevo caches results."""
from __future__ import annotations

import os
from pathlib import Path

DEFAULT_DIR = Path(__file__).resolve().parent / "data" / "default"
DEFAULT_MODEL = DEFAULT_DIR / "model.onnx"
DEFAULT_DATA = DEFAULT_DIR / "eval.npz"
DEFAULT_CALIB = DEFAULT_DIR / "calib.npz"


def cache_dir() -> Path:
    """QEVO_CACHE_DIR, else the platform's user cache directory."""
    configured = os.environ.get("QEVO_CACHE_DIR")
    if configured:
        return Path(configured)
    import platformdirs

    return Path(platformdirs.user_cache_dir("qevo"))
