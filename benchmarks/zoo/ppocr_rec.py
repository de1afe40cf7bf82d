"""PP-OCRv4 text-line recognizer (SVTR-LCNet, CTC) from rapidocr-onnxruntime, on text lines drawn here.

The data are cropped text lines as a detector would hand them over: English words, numbers, codes,
dates and prices in Pillow's bundled font at sizes 14-44 px, some bold, italic-sheared, condensed or
inverted, on tinted backgrounds, with blur, low resolution and noise. Each line goes through the package's
own preprocessing (ch_ppocr_rec/text_recognize.py `resize_norm_img` with rec_img_shape [3, 48, 320]):
BGR, resized to height 48 keeping its aspect ratio (squeezed when wider than 320), scaled to [-1, 1],
right-padded with zeros to 48 x 320.

Metric: character accuracy in %, the PaddleOCR `norm_edit_dis` way: the mean over lines of
1 - edit_distance(prediction, truth) / max(len(prediction), len(truth)), where the prediction is greedy CTC
decoding of the model output (argmax per time step, repeats merged, blanks (index 0) dropped). Labels are the
true strings as indices into the model's output classes ([blank] + metadata "character" list + [space]),
padded with -1. Leading and trailing spaces of the prediction are dropped (the model often reads the padding
as a space); spaces inside a line count.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np

NAME = "ppocr-rec"
FAMILY = "text recognition (CNN + SVTR, CTC), PP-OCRv4 mobile"
PACKAGES = ["rapidocr-onnxruntime==1.4.4"]
METRIC = "ppocr_rec.py:char_accuracy"
SIZES = {"search": 100, "test": 100, "calib": 32}
SIZES_SMALL = {"search": 12, "test": 12, "calib": 8}

MODEL_FILE = "ch_PP-OCRv4_rec_infer.onnx"
HEIGHT, WIDTH = 48, 320        # rec_img_shape of the package's config.yaml
MAX_LABEL = 32                 # label columns (longest string drawn is shorter)
SEED = 20240611

WORDS = """
the of and to in is for on with as by at from that this be are was it or an not have which has will can
all more new one about also time year people may first some out other after only them over into their
model layer quantization network accuracy latency energy search policy weight tensor channel device battery
camera phone screen window street station market school garden river mountain coffee bread butter cheese
apple orange lemon ticket invoice receipt order number total amount price discount payment customer account
address office hospital airport hotel museum library theatre bridge tower castle harbour island village
north south east west open closed exit entrance parking floor room level gate platform service express
monday tuesday wednesday thursday friday saturday sunday january february march april june july august
september october november december morning evening night today tomorrow delivery package return refund
quality control system input output signal value error warning update version release software hardware
green yellow purple silver golden simple strong quick brown lazy jumps over dog fox zebra quartz vivid
""".split()
PUNCT = ".,:;-/()#%&'!?@+"


def _random_text(rng: np.random.Generator) -> str:
    kind = rng.random()
    if kind < 0.45:
        words = [str(w) for w in rng.choice(WORDS, size=int(rng.integers(1, 4)))]
        case = rng.random()
        if case < 0.3:
            words = [w.capitalize() for w in words]
        elif case < 0.45:
            words = [w.upper() for w in words]
        elif case < 0.55:
            words[0] = words[0].capitalize()
        text = " ".join(words)
        if rng.random() < 0.3:
            text += str(rng.choice(list(".,:;!?")))
        return text
    if kind < 0.6:
        a = int(rng.integers(1, 999))
        templates = [f"${a}.{int(rng.integers(0, 100)):02d}", f"{a}%", f"No. {a}",
                     f"{int(rng.integers(1990, 2030))}-{int(rng.integers(1, 13)):02d}-{int(rng.integers(1, 29)):02d}",
                     f"{int(rng.integers(0, 24)):02d}:{int(rng.integers(0, 60)):02d}",
                     f"({int(rng.integers(100, 1000))}) {int(rng.integers(100, 1000))}"
                     f"-{int(rng.integers(1000, 10000))}",
                     f"{int(rng.integers(1, 32))}/{int(rng.integers(1, 13))}/{int(rng.integers(10, 100))}",
                     f"+{int(rng.integers(1, 99))} {int(rng.integers(1000, 100000))}"]
        return templates[int(rng.integers(len(templates)))]
    if kind < 0.8:
        letters = "ABCDEFGHJKLMNPQRSTUVWXYZ"
        code = "".join(rng.choice(list(letters), size=int(rng.integers(1, 4))))
        digits = "".join(rng.choice(list("0123456789"), size=int(rng.integers(2, 6))))
        sep = str(rng.choice(["-", "", "/", " ", "#"]))
        word = str(rng.choice(WORDS)).capitalize()
        templates = [f"{code}{sep}{digits}", f"{word} {digits}", f"{word} {code}{digits}", f"#{digits}",
                     f"{word}: {digits}", f"{code.lower()}{digits}@{rng.choice(WORDS)}.com"]
        return templates[int(rng.integers(len(templates)))]
    # a short phrase with punctuation
    words = [str(w) for w in rng.choice(WORDS, size=int(rng.integers(2, 4)))]
    glue = str(rng.choice([", ", " - ", " & ", " / ", "; ", " + "]))
    text = words[0].capitalize() + glue + " ".join(words[1:])
    if rng.random() < 0.5:
        text += str(rng.choice(list(".!?")))
    return text


def _colours(rng: np.random.Generator):
    """Background and ink colours, RGB, with contrast between about 60 and 250 grey levels."""
    base = rng.uniform(170, 255)
    bg = np.clip(base + rng.normal(0, 12, 3), 0, 255)
    ink = np.clip(rng.uniform(0, base - 70) + rng.normal(0, 15, 3), 0, 255)
    if rng.random() < 0.12:  # light text on a dark background
        bg, ink = 255 - bg, 255 - ink
    return tuple(int(v) for v in bg), tuple(int(v) for v in ink)


def draw_line(rng: np.random.Generator, text: str):
    """One text line as a detector would crop it: an RGB Pillow image."""
    from PIL import Image, ImageDraw, ImageFilter, ImageFont

    size = int(rng.integers(14, 45))
    font = ImageFont.load_default(size=size)
    stroke = 1 if size >= 22 and rng.random() < 0.2 else 0
    bg, ink = _colours(rng)
    probe = ImageDraw.Draw(Image.new("L", (1, 1)))
    left, top, right, bottom = probe.textbbox((0, 0), text, font=font, stroke_width=stroke)
    ascent, descent = font.getmetrics()
    pad_x = (rng.uniform(0.1, 0.7) * size, rng.uniform(0.1, 0.7) * size)
    pad_y = (rng.uniform(0.05, 0.35) * size, rng.uniform(0.05, 0.35) * size)
    width = int(math.ceil(right - left + pad_x[0] + pad_x[1]))
    height = int(math.ceil(ascent + descent + pad_y[0] + pad_y[1]))
    image = Image.new("RGB", (width + 2 * size, height + 2 * size), bg)
    draw = ImageDraw.Draw(image)
    draw.text((size + pad_x[0] - left, size + pad_y[0]), text, fill=ink, font=font, stroke_width=stroke,
              stroke_fill=ink)
    if rng.random() < 0.25:  # italic-like shear
        shear = rng.uniform(-0.25, 0.25)
        image = image.transform(image.size, Image.AFFINE, (1, shear, -shear * image.size[1] / 2, 0, 1, 0),
                                resample=Image.BILINEAR, fillcolor=bg)
    if rng.random() < 0.3:  # slightly rotated crop
        image = image.rotate(float(rng.uniform(-2.5, 2.5)), resample=Image.BILINEAR, fillcolor=bg)
    image = image.crop((size, size, size + width, size + height))
    if rng.random() < 0.3:  # condensed or wide
        image = image.resize((max(1, int(width * rng.uniform(0.75, 1.25))), height), Image.BILINEAR)
    if rng.random() < 0.4:  # low resolution: down and up again
        factor = rng.uniform(0.35, 0.8)
        small = image.resize((max(1, int(image.size[0] * factor)), max(1, int(image.size[1] * factor))),
                             Image.BILINEAR)
        image = small.resize(image.size, Image.BILINEAR)
    if rng.random() < 0.65:
        image = image.filter(ImageFilter.GaussianBlur(float(rng.uniform(0.3, 1.5))))
    pixels = np.asarray(image, np.float32)
    pixels = pixels + rng.normal(0, rng.uniform(0, 18), pixels.shape)
    return np.clip(np.round(pixels), 0, 255).astype(np.uint8)


def cv2_resize_linear(image: np.ndarray, width: int, height: int) -> np.ndarray:
    """cv2.resize(image, (width, height)) with INTER_LINEAR, for uint8 HWC images (to within rounding)."""
    src_h, src_w = image.shape[:2]

    def axis(n_out, n_in):
        pos = (np.arange(n_out) + 0.5) * (n_in / n_out) - 0.5
        pos = np.clip(pos, 0, n_in - 1)
        lo = np.floor(pos).astype(np.int64)
        hi = np.minimum(lo + 1, n_in - 1)
        return lo, hi, (pos - lo).astype(np.float32)

    y0, y1, fy = axis(height, src_h)
    x0, x1, fx = axis(width, src_w)
    img = image.astype(np.float32)
    rows = img[y0] * (1 - fy)[:, None, None] + img[y1] * fy[:, None, None]
    out = rows[:, x0] * (1 - fx)[None, :, None] + rows[:, x1] * fx[None, :, None]
    return np.clip(np.round(out), 0, 255).astype(np.uint8)


def preprocess(bgr: np.ndarray, height: int = HEIGHT, width: int = WIDTH) -> np.ndarray:
    """The package's TextRecognizer.resize_norm_img for one line (max_wh_ratio = width / height)."""
    h, w = bgr.shape[:2]
    ratio = w / float(h)
    resized_w = width if math.ceil(height * ratio) > width else int(math.ceil(height * ratio))
    resized = cv2_resize_linear(bgr, resized_w, height).astype(np.float32)
    resized = resized.transpose((2, 0, 1)) / 255
    resized -= 0.5
    resized /= 0.5
    padded = np.zeros((3, height, width), dtype=np.float32)
    padded[:, :, :resized_w] = resized
    return padded


def character_classes(model_path: Path) -> list[str]:
    """The model's output classes as the package's CTCLabelDecode builds them: blank, the list, space."""
    import onnx

    model = onnx.load(str(model_path))
    meta = {p.key: p.value for p in model.metadata_props}
    return ["blank", *meta["character"].splitlines(), " "]


def encode(text: str, index: dict[str, int]) -> np.ndarray:
    row = np.full(MAX_LABEL, -1, np.int32)
    row[:len(text)] = [index[ch] for ch in text]
    return row


def lines(count: int, classes: list[str], seed: int = SEED) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    index = {ch: i for i, ch in enumerate(classes)}
    images, labels = [], []
    for _ in range(count):
        text = _random_text(rng)
        while len(text) > MAX_LABEL:
            text = _random_text(rng)
        rgb = draw_line(rng, text)
        images.append(preprocess(np.ascontiguousarray(rgb[:, :, ::-1])))  # the package reads BGR (OpenCV)
        labels.append(encode(text, index))
    return {"x": np.stack(images), "labels": np.stack(labels)}


def prepare(out: Path, sizes: dict) -> dict:
    import shutil

    from zoo import common

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    source = common.package_dir("rapidocr_onnxruntime") / "models" / MODEL_FILE
    shutil.copyfile(source, out / "model.onnx")
    classes = character_classes(source)
    total = sizes["search"] + sizes["test"] + sizes["calib"]
    data = lines(total, classes)
    common.write_splits(out, data, sizes)
    return {"input_shape": [None, 3, HEIGHT, WIDTH], "output": "softmax [N, 40, 6625] over CTC classes",
            "dims": {"?": HEIGHT, "p2o.DynamicDimension.1": WIDTH},  # qevo --dim, for counting MACs
            "source": f"rapidocr_onnxruntime/models/{MODEL_FILE} (unchanged)",
            "notes": "English text lines drawn with Pillow's bundled font, BGR, package preprocessing "
                     "(height 48, aspect kept, width padded to 320, (x/255-0.5)/0.5). Metric: character accuracy "
                     "% (1 - normalised edit distance) of greedy CTC decoding; labels are class indices padded "
                     "with -1."}


# -- metric (numpy only) ---------------------------------------------------------------------------------------
def _edit_distance(a: list[int], b: list[int]) -> int:
    previous = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        current = [i]
        for j, y in enumerate(b, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (x != y)))
        previous = current
    return previous[-1]


def ctc_greedy(probs: np.ndarray) -> list[list[int]]:
    """Greedy CTC decoding of [N, T, C] class scores: argmax, merge repeats, drop blanks (class 0), then
    strip leading and trailing spaces (the last class, as CTCLabelDecode appends it)."""
    probs = np.asarray(probs)
    best = probs.argmax(axis=-1)
    keep = np.ones(best.shape, bool)
    keep[:, 1:] = best[:, 1:] != best[:, :-1]
    keep &= best != 0
    space = probs.shape[-1] - 1
    decoded = []
    for row, mask in zip(best, keep):
        chars = row[mask].tolist()
        while chars and chars[0] == space:
            chars.pop(0)
        while chars and chars[-1] == space:
            chars.pop()
        decoded.append(chars)
    return decoded


def char_accuracy(outputs: list, labels) -> float:
    """Mean over lines of 1 - edit distance / max(length of prediction, length of truth), in %."""
    predictions = ctc_greedy(outputs[0])
    truths = [row[row >= 0].tolist() for row in np.asarray(labels)]
    total = 0.0
    for pred, truth in zip(predictions, truths):
        longest = max(len(pred), len(truth))
        total += 1.0 - (_edit_distance(pred, truth) / longest if longest else 0.0)
    return 100.0 * total / len(truths)
