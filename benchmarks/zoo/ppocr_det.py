"""PP-OCRv4 text detector (DBNet, MobileNetV3-style backbone) from rapidocr-onnxruntime, on pages drawn here.

The data are 320 x 320 pages as the network sees them (already at the size the package's resize step makes,
a multiple of 32): lines of English words, numbers and codes in Pillow's bundled font at 11-36 px and in
varied colours, on tinted, shaded and noisy backgrounds with non-text clutter (boxes, rules, circles,
stripes, blobs), some blur. Each page goes through the package's own normalisation
(ch_ppocr_det/utils.py DetPreProcess: BGR, x / 255, mean 0.5, std 0.5, CHW).

Labels are the ground-truth text-region mask at the output resolution (uint8 [N, 320, 320]): each drawn text
line's tight ink box, shrunk the way DBNet's training targets are (offset D = A (1 - r^2) / L, r = 0.4).
Metric: pixel-level F1 (%) of the probability map thresholded at 0.3 (DBPostProcess `thresh`) against that
mask, pooled over all pages.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

NAME = "ppocr-det"
FAMILY = "text detection (DBNet), PP-OCRv4 mobile"
PACKAGES = ["rapidocr-onnxruntime==1.4.4"]
METRIC = "ppocr_det.py:pixel_f1"
SIZES = {"search": 100, "test": 100, "calib": 32}
SIZES_SMALL = {"search": 12, "test": 12, "calib": 6}

MODEL_FILE = "ch_PP-OCRv4_det_infer.onnx"
SIDE = 320                 # page side in pixels (a multiple of 32, as DetPreProcess.resize makes it)
THRESH = 0.3               # DBPostProcess thresh (config.yaml Det.thresh)
SHRINK_RATIO = 0.65        # shrink ratio of the text-kernel target on tight ink boxes (see the docstring)
SEED = 20240612

WORDS = """
the of and to in is for on with as by at from that this be are was it or an not have which has will can
all more new one about also time year people may first some out other after only them over into their
model layer quantization network accuracy latency energy search policy weight tensor channel device battery
camera phone screen window street station market school garden river mountain coffee bread butter cheese
apple orange lemon ticket invoice receipt order number total amount price discount payment customer account
address office hospital airport hotel museum library theatre bridge tower castle harbour island village
north south east west open closed exit entrance parking floor room level gate platform service express
monday tuesday wednesday thursday friday saturday sunday january february march april june july august
quality control system input output signal value error warning update version release software hardware
""".split()


def _token(rng: np.random.Generator) -> str:
    r = rng.random()
    if r < 0.7:
        word = str(rng.choice(WORDS))
        case = rng.random()
        return word.capitalize() if case < 0.25 else word.upper() if case < 0.35 else word
    if r < 0.85:
        return str(int(rng.integers(1, 100000)))
    if r < 0.93:
        return f"${int(rng.integers(1, 1000))}.{int(rng.integers(0, 100)):02d}"
    return f"{''.join(rng.choice(list('ABCDEFGHKLMNPRSTUVWXYZ'), size=2))}-{int(rng.integers(10, 9999))}"


def _background(rng: np.random.Generator, side: int) -> np.ndarray:
    """A float RGB background: tinted, shaded, sometimes blotchy."""
    base = rng.uniform(150, 255, 3) if rng.random() < 0.85 else rng.uniform(20, 110, 3)
    yy, xx = np.mgrid[0:side, 0:side].astype(np.float32) / side
    shade = rng.uniform(-40, 40) * (xx - 0.5) + rng.uniform(-40, 40) * (yy - 0.5)
    page = base[None, None, :] + shade[..., None]
    if rng.random() < 0.4:  # soft blotches, like a photo or paper texture
        from PIL import Image

        cells = int(rng.integers(3, 12))
        coarse = np.clip(128 + 40 * rng.normal(0, 1, (cells, cells, 3)), 0, 255).astype(np.uint8)
        up = np.asarray(Image.fromarray(coarse).resize((side, side), Image.BICUBIC), np.float32) - 128
        page = page + rng.uniform(0.2, 1.0) * up
    return page


def _clutter(draw, rng: np.random.Generator, side: int) -> None:
    """Non-text marks a text detector should ignore."""
    for _ in range(int(rng.integers(0, 6))):
        colour = tuple(int(v) for v in rng.uniform(0, 255, 3))
        x0, y0 = (int(v) for v in rng.integers(0, side, 2))
        x1, y1 = x0 + int(rng.integers(10, 160)), y0 + int(rng.integers(10, 160))
        kind = int(rng.integers(0, 5))
        if kind == 0:
            draw.rectangle((x0, y0, x1, y1), outline=colour, width=int(rng.integers(1, 4)))
        elif kind == 1:
            draw.line((x0, y0, x1, y0 if rng.random() < 0.5 else y1), fill=colour, width=int(rng.integers(1, 4)))
        elif kind == 2:
            draw.ellipse((x0, y0, x1, y1), outline=colour, width=int(rng.integers(1, 4)))
        elif kind == 3:
            draw.rectangle((x0, y0, x1, y1), fill=colour)
        else:  # barcode-like stripes
            x = x0
            while x < x1:
                w = int(rng.integers(1, 4))
                draw.rectangle((x, y0, x + w - 1, y0 + int(rng.integers(15, 50))), fill=colour)
                x += w + int(rng.integers(1, 5))


def _shrunk_box(left: float, top: float, right: float, bottom: float) -> tuple[float, float, float, float]:
    """DBNet's text-kernel target for an axis-aligned box: shrink every side by A (1 - r^2) / L."""
    w, h = right - left, bottom - top
    d = w * h * (1 - SHRINK_RATIO ** 2) / (2 * (w + h))
    return left + d, top + d, right - d, bottom - d


def draw_page(rng: np.random.Generator, side: int = SIDE):
    """One page: uint8 RGB image and uint8 text mask (1 inside the shrunk text boxes)."""
    from PIL import Image, ImageDraw, ImageFilter, ImageFont

    page = Image.fromarray(np.clip(_background(rng, side), 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(page)
    _clutter(draw, rng, side)
    mask = np.zeros((side, side), np.uint8)
    taken = np.zeros((side, side), bool)
    lines = int(rng.integers(3, 12))
    for _ in range(lines * 4):  # attempts
        if lines == 0:
            break
        size = int(rng.integers(11, 37))
        font = ImageFont.load_default(size=size)
        text = " ".join(_token(rng) for _ in range(int(rng.integers(1, 6))))
        left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
        if right - left >= side - 8:
            continue
        x = int(rng.integers(2, side - (right - left) - 2)) - left
        y = int(rng.integers(2, max(3, side - (bottom - top) - 2))) - top
        box = (x + left, y + top, x + right, y + bottom)
        pad = size // 3
        region = taken[max(0, box[1] - pad):box[3] + pad, max(0, box[0] - pad):box[2] + pad]
        if region.any() or box[3] >= side:
            continue
        region[:] = True
        below = np.asarray(page.crop(box), np.float32).mean()
        ink = (rng.uniform(0, 80, 3) if below > 128 else rng.uniform(180, 255, 3)) + rng.normal(0, 10, 3)
        stroke = 1 if size >= 20 and rng.random() < 0.2 else 0
        draw.text((x, y), text, fill=tuple(int(v) for v in np.clip(ink, 0, 255)), font=font,
                  stroke_width=stroke, stroke_fill=tuple(int(v) for v in np.clip(ink, 0, 255)))
        l, t, r, b = draw.textbbox((x, y), text, font=font, stroke_width=stroke)
        sl, st, sr, sb = _shrunk_box(l, t, r, b)
        mask[int(round(st)):int(round(sb)), int(round(sl)):int(round(sr))] = 1
        lines -= 1
    if rng.random() < 0.5:
        page = page.filter(ImageFilter.GaussianBlur(float(rng.uniform(0.3, 1.2))))
    pixels = np.asarray(page, np.float32) + rng.normal(0, rng.uniform(0, 12), (side, side, 3))
    return np.clip(np.round(pixels), 0, 255).astype(np.uint8), mask


def preprocess(bgr: np.ndarray) -> np.ndarray:
    """DetPreProcess.normalize and permute (the page is already at a multiple of 32)."""
    mean = np.array([0.5, 0.5, 0.5])
    std = np.array([0.5, 0.5, 0.5])
    img = (bgr.astype("float32") * (1 / 255.0) - mean) / std
    return img.transpose((2, 0, 1)).astype(np.float32)


def pages(count: int, seed: int = SEED) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    images, masks = [], []
    for _ in range(count):
        rgb, mask = draw_page(rng)
        images.append(preprocess(np.ascontiguousarray(rgb[:, :, ::-1])))  # the package reads BGR (OpenCV)
        masks.append(mask)
    return {"x": np.stack(images), "labels": np.stack(masks)}


def prepare(out: Path, sizes: dict) -> dict:
    import shutil

    from zoo import common

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(common.package_dir("rapidocr_onnxruntime") / "models" / MODEL_FILE, out / "model.onnx")
    total = sizes["search"] + sizes["test"] + sizes["calib"]
    common.write_splits(out, pages(total), sizes)
    return {"input_shape": [None, 3, SIDE, SIDE], "output": f"text probability map [N, 1, {SIDE}, {SIDE}]",
            "dims": {"p2o.DynamicDimension.1": SIDE, "p2o.DynamicDimension.2": SIDE},  # qevo --dim, for MACs
            "source": f"rapidocr_onnxruntime/models/{MODEL_FILE} (unchanged)",
            "notes": f"{SIDE}x{SIDE} pages of English text lines drawn with Pillow's bundled font, with clutter, "
                     "blur and noise; BGR, (x/255-0.5)/0.5. Labels: DBNet-shrunk text-box mask (uint8). Metric: "
                     f"pixel F1 % of prob > {THRESH} against the mask, pooled over pages."}


# -- metric (numpy only) ---------------------------------------------------------------------------------------
def pixel_f1(outputs: list, labels) -> float:
    """Pixel F1 (%) of the probability map above 0.3 against the ground-truth text mask, over all pages."""
    predicted = np.asarray(outputs[0])[:, 0] > THRESH
    truth = np.asarray(labels).astype(bool)
    tp = float(np.count_nonzero(predicted & truth))
    fp = float(np.count_nonzero(predicted & ~truth))
    fn = float(np.count_nonzero(~predicted & truth))
    return 100.0 * 2 * tp / max(2 * tp + fp + fn, 1.0)
