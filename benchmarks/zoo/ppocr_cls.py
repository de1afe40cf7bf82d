"""PP-OCR mobile v2.0 text-line direction classifier (0 or 180 degrees) from rapidocr-onnxruntime.

The data are text-line crops drawn the way ppocr_rec.py draws them (Pillow's bundled font, sizes 14-44 px,
colours, shear, blur, low resolution and noise), every other one turned upside down; a fifth of the lines
are bare digit strings of 1-6 digits, which are the hardest for this model. No string is made symmetric on
purpose: the fp32 model simply misses some short, blurred or upper-case lines (about 90% accuracy). Each
line goes through the package's own preprocessing (ch_ppocr_cls/text_cls.py `resize_norm_img`,
cls_image_shape [3, 48, 192]): BGR, resized to height 48 keeping its aspect ratio (squeezed when wider than
192), scaled to [-1, 1], right-padded with zeros to 48 x 192.

The model is copied unchanged. Its batch dims are stored as dim_value -1 by Paddle2ONNX, a trap qevo reads
as a dynamic dim.

Labels: 0 for upright, 1 for turned 180 degrees (the package's label_list ['0', '180']).
Metric: accuracy (%) of the argmax of the two class scores.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np

NAME = "ppocr-cls"
FAMILY = "text-line direction classifier (MobileNetV3 small), PP-OCR mobile v2.0"
PACKAGES = ["rapidocr-onnxruntime==1.4.4"]
METRIC = "ppocr_cls.py:direction_accuracy"
SIZES = {"search": 960, "test": 960, "calib": 64}
SIZES_SMALL = {"search": 96, "test": 96, "calib": 16}

MODEL_FILE = "ch_ppocr_mobile_v2.0_cls_infer.onnx"
HEIGHT, WIDTH = 48, 192        # cls_image_shape of the package's config.yaml
SEED = 20240613


def _text(rng: np.random.Generator) -> str:
    """Mostly the recognizer's lines (words, codes, dates, prices); a fifth are bare digit strings."""
    from zoo import ppocr_rec

    if rng.random() < 0.2:
        return "".join(rng.choice(list("0123456789"), size=int(rng.integers(1, 7))))
    return ppocr_rec._random_text(rng)


def preprocess(bgr: np.ndarray, height: int = HEIGHT, width: int = WIDTH) -> np.ndarray:
    """The package's TextClassifier.resize_norm_img for one line (3 channels)."""
    from zoo import ppocr_rec

    h, w = bgr.shape[:2]
    ratio = w / float(h)
    resized_w = width if math.ceil(height * ratio) > width else int(math.ceil(height * ratio))
    resized = ppocr_rec.cv2_resize_linear(bgr, resized_w, height).astype("float32")
    resized = resized.transpose((2, 0, 1)) / 255
    resized -= 0.5
    resized /= 0.5
    padded = np.zeros((3, height, width), dtype=np.float32)
    padded[:, :, :resized_w] = resized
    return padded


def lines(count: int, seed: int = SEED) -> dict[str, np.ndarray]:
    from zoo import ppocr_rec

    rng = np.random.default_rng(seed)
    images, labels = [], []
    for i in range(count):
        label = i % 2
        rgb = ppocr_rec.draw_line(rng, _text(rng))
        if label:
            rgb = rgb[::-1, ::-1]  # a half turn
        images.append(preprocess(np.ascontiguousarray(rgb[:, :, ::-1])))  # the package reads BGR (OpenCV)
        labels.append(label)
    return {"x": np.stack(images), "labels": np.array(labels, np.int64)}


def prepare(out: Path, sizes: dict) -> dict:
    import shutil

    from zoo import common

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(common.package_dir("rapidocr_onnxruntime") / "models" / MODEL_FILE, out / "model.onnx")
    total = sizes["search"] + sizes["test"] + sizes["calib"]
    common.write_splits(out, lines(total), sizes)
    return {"input_shape": [None, 3, HEIGHT, WIDTH], "output": "softmax [N, 2] (0, 180 degrees)",
            "dims": {"?": HEIGHT},  # height and width share the name '?': MACs are counted at 48 x 48, not 48 x 192
            "source": f"rapidocr_onnxruntime/models/{MODEL_FILE} (unchanged; batch dims stored as -1)",
            "notes": "Text lines drawn as for ppocr-rec (a fifth bare digit strings), every other one turned 180 "
                     "degrees; "
                     "BGR, package preprocessing (height 48, width padded to 192, (x/255-0.5)/0.5). "
                     "Metric: accuracy %."}


# -- metric (numpy only) ---------------------------------------------------------------------------------------
def direction_accuracy(outputs: list, labels) -> float:
    """Accuracy (%) of argmax over the two classes against labels 0 (upright) / 1 (180 degrees)."""
    predicted = np.asarray(outputs[0]).reshape(len(outputs[0]), -1).argmax(axis=1)
    return 100.0 * float(np.mean(predicted == np.asarray(labels).reshape(-1)))
