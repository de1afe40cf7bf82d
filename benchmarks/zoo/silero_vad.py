"""Silero VAD v6 (the ONNX model with both sample rates in If branches) on synthesised audio.

Data: no speech corpus ships offline, so 16 kHz recordings are synthesised here: speech-like
utterances (glottal pulse trains with a speaker's pitch and intonation through a cascade of formant
resonators, vowel targets per syllable, fricative and plosive onsets, syllable-rate envelopes) placed
between non-speech stretches and over backgrounds (white / pink / brown noise, music-like notes and
chords, mains hum, clicks), with ground truth speech / non-speech per audio sample.

Each sample is one 512-sample chunk with the 64 samples of context before it (576 inputs, as
silero-vad's OnnxWrapper feeds the model) and the LSTM state the fp32 model had after the chunks
before it in its recording: the model is streaming, and a chunk with a zero state says little (about
60% accuracy on this audio, 92-93% with the streamed state). The policy under test thus runs one step
from an fp32 history. qevo stacks samples on axis 0, while the model's state is [2, N, 128]; so model.onnx is the
packaged model with the state input and output made batch-first ([N, 2, 128], a Transpose each side)
and nothing else changed. `sr` is a scalar input (16000) used for every batch.

Metric: frame accuracy (%) of speech probability > 0.5 against the synthesised labels.

What qevo reaches: the 12 Conv layers inside the If branches (6 per sample rate), weights only. At
sr=16000 only the then-branch runs, so the 8 kHz branch's 6 layers never change the metric. The LSTM
(and its weights) is not a quantizable op. Synthesis uses scipy.signal (a qevo dependency).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

NAME = "silero-vad"
FAMILY = "streaming voice activity detector: STFT conv + conv encoder + LSTM in If branches (16 / 8 kHz)"
PACKAGES = ("silero-vad==6.2.3",)
METRIC = "silero_vad.py:frame_accuracy"
SIZES = {"search": 24000, "test": 24000, "calib": 64}
SIZES_SMALL = {"search": 3000, "test": 3000, "calib": 32}
SEED = 16000
SR = 16000
CHUNK = 512          # samples per model step at 16 kHz
CONTEXT = 64         # samples of the previous chunk prepended, as silero-vad's OnnxWrapper does
STRIDE = 3           # keep every 3rd chunk of a recording: more recordings for the same sample count
RECORDING_SECONDS = 8.0
MODEL_FILE = ("data", "silero_vad.onnx")


def frame_accuracy(outputs: list[np.ndarray], labels: np.ndarray | None) -> float:
    """Per-chunk accuracy (%) of speech probability > 0.5 against the ground truth (1 speech, 0 not)."""
    speech = np.asarray(outputs[0]).reshape(-1) > 0.5
    return 100.0 * float(np.mean(speech == (np.asarray(labels).reshape(-1) > 0)))


# -- synthesis --------------------------------------------------------------------------------------
VOWELS = {  # F1, F2, F3 in Hz (adult averages)
    "a": (730, 1090, 2440), "e": (530, 1840, 2480), "i": (270, 2290, 3010), "o": (570, 840, 2410),
    "u": (300, 870, 2240), "ae": (660, 1720, 2410), "er": (490, 1350, 1690), "uh": (520, 1190, 2390)}


def _resonator(freq: float, bandwidth: float):
    r = np.exp(-np.pi * bandwidth / SR)
    a = [1.0, -2.0 * r * np.cos(2 * np.pi * freq / SR), r * r]
    return [sum(a)], a   # unit gain at DC


def _glottal(f0: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Glottal flow derivative of a pulse train following the pitch contour f0 (Hz per sample)."""
    frac = np.cumsum(f0 / SR) % 1.0
    open_quotient = rng.uniform(0.5, 0.7)
    flow = np.where(frac < open_quotient, 0.5 * (1 - np.cos(np.pi * frac / open_quotient)),
                    np.cos(np.pi * (frac - open_quotient) / (2 * (1 - open_quotient))).clip(0))
    return np.diff(flow, prepend=flow[0]) + rng.normal(0, 0.002, len(f0))


def _syllable(rng: np.random.Generator, f0: float) -> np.ndarray:
    from scipy.signal import lfilter

    parts = []
    onset = rng.integers(4)
    if onset == 1:    # fricative
        n = int(rng.uniform(0.04, 0.11) * SR)
        b, a = _resonator(rng.uniform(2500, 6000), rng.uniform(800, 2500))
        parts.append(lfilter(b, a, rng.normal(0, 1, n)) * rng.uniform(0.05, 0.25) * np.hanning(n))
    elif onset == 2:  # plosive: closure, then burst
        parts.append(np.zeros(int(rng.uniform(0.02, 0.06) * SR)))
        n = int(rng.uniform(0.008, 0.02) * SR)
        parts.append(rng.normal(0, 1, n) * np.exp(-np.arange(n) / (0.004 * SR)) * rng.uniform(0.1, 0.4))
    n = int(rng.uniform(0.08, 0.25) * SR)
    glide = 1 + rng.uniform(-0.15, 0.15) * np.arange(n) / n
    jitter = 1 + 0.005 * rng.normal(size=n).cumsum() / np.sqrt(np.arange(1, n + 1))
    voiced = _glottal(f0 * glide * jitter, rng)
    formants = [f * rng.uniform(0.9, 1.15) for f in VOWELS[list(VOWELS)[rng.integers(len(VOWELS))]]] + [3500, 4500]
    for freq, bandwidth in zip(formants, (60, 90, 120, 200, 250)):
        b, a = _resonator(freq, bandwidth * rng.uniform(0.8, 1.3))
        voiced = lfilter(b, a, voiced)
    ramp = np.minimum(1, np.minimum(np.arange(n), np.arange(n)[::-1]) / (0.02 * SR))
    parts.append(voiced * ramp / (np.std(voiced) + 1e-9) * rng.uniform(0.3, 1.0))
    return np.concatenate(parts)


def _utterance(rng: np.random.Generator, seconds: float) -> np.ndarray:
    speaker_f0 = rng.uniform(90, 230)
    parts, total = [], 0
    while total < seconds * SR:
        declination = 1.0 - 0.15 * total / (seconds * SR)
        parts.append(_syllable(rng, speaker_f0 * declination * rng.uniform(0.9, 1.15)))
        total += len(parts[-1])
        if rng.random() < 0.15:   # a short pause inside the utterance (still labelled speech)
            parts.append(np.zeros(int(rng.uniform(0.05, 0.15) * SR)))
            total += len(parts[-1])
    return np.concatenate(parts)


def _coloured_noise(rng: np.random.Generator, n: int, exponent: float) -> np.ndarray:
    spectrum = np.fft.rfft(rng.normal(size=n))
    freqs = np.arange(len(spectrum), dtype=np.float64)
    freqs[0] = 1.0
    y = np.fft.irfft(spectrum / freqs ** (exponent / 2), n)
    return y / (np.std(y) + 1e-9)


def _music(rng: np.random.Generator, n: int) -> np.ndarray:
    y, pos, base = np.zeros(n), 0, rng.uniform(110, 440)
    while pos < n:
        m = int(rng.uniform(0.15, 0.8) * SR)
        t = np.arange(m) / SR
        note = np.zeros(m)
        for freq in base * 2 ** (rng.integers(-5, 12, size=rng.integers(1, 4)) / 12):
            for h in range(1, 8):
                if freq * h < 7000:
                    note += np.sin(2 * np.pi * freq * h * t + rng.uniform(0, 6)) * 0.6 ** h
        note *= np.exp(-t * rng.uniform(0.5, 6)) * np.minimum(1, t / 0.01)
        end = min(n, pos + m)
        y[pos:end] += note[:end - pos]
        pos += m
    return y / (np.std(y) + 1e-9)


def _non_speech(rng: np.random.Generator, n: int) -> np.ndarray:
    kind = rng.integers(6)
    if kind == 0:
        return rng.normal(size=n)
    if kind in (1, 2):                 # pink, brown
        return _coloured_noise(rng, n, float(kind))
    if kind == 3:
        return _music(rng, n)
    if kind == 4:                      # mains hum
        t = np.arange(n) / SR
        mains = rng.choice([50, 60, 100, 120])
        return sum(np.sin(2 * np.pi * mains * h * t) / h for h in range(1, 6)) + 0.1 * rng.normal(size=n)
    y = np.zeros(n)                    # clicks and knocks
    for start in rng.integers(0, n - 400, size=int(n / SR * rng.uniform(2, 10))):
        y[start:start + 400] += rng.normal(size=400) * np.exp(-np.arange(400) / 40)
    return y


def recording(rng: np.random.Generator, seconds: float = RECORDING_SECONDS) -> tuple[np.ndarray, np.ndarray]:
    """(audio float32, speech flag per audio sample): utterances between non-speech, over a background."""
    n = int(seconds * SR)
    audio, speech = np.zeros(n), np.zeros(n, dtype=bool)
    pos = int(rng.uniform(0.2, 1.0) * SR)
    while pos < n - SR // 2:
        utterance = _utterance(rng, rng.uniform(0.5, 2.5))[:n - pos]
        audio[pos:pos + len(utterance)] += utterance * rng.uniform(0.05, 0.3)
        speech[pos:pos + len(utterance)] = True
        pos += len(utterance) + int(rng.uniform(0.4, 2.0) * SR)
    audio += _non_speech(rng, n) * rng.uniform(0.002, 0.02)
    for _ in range(rng.integers(1, 3)):
        m = int(rng.uniform(0.5, 2.5) * SR)
        start = rng.integers(0, n - m)
        audio[start:start + m] += _non_speech(rng, m) * rng.uniform(0.02, 0.15) * np.hanning(m)
    return audio.astype(np.float32), speech


# -- the model --------------------------------------------------------------------------------------

def batch_first_state(model):
    """The packaged model with `state` / `stateN` as [N, 2, 128] instead of [2, N, 128]."""
    import onnx
    from onnx import TensorProto, helper

    graph = model.graph
    inner_in, inner_out = "state__2n128", "stateN__2n128"

    def rename(g):
        for node in g.node:
            node.input[:] = [inner_in if name == "state" else name for name in node.input]
            for attr in node.attribute:
                if attr.type == onnx.AttributeProto.GRAPH:
                    rename(attr.g)
                for sub in attr.graphs:
                    rename(sub)

    rename(graph)
    for node in graph.node:
        node.output[:] = [inner_out if name == "stateN" else name for name in node.output]
    graph.node.insert(0, helper.make_node("Transpose", ["state"], [inner_in], name="state_to_2n128", perm=[1, 0, 2]))
    graph.node.append(helper.make_node("Transpose", [inner_out], ["stateN"], name="stateN_to_n2x128", perm=[1, 0, 2]))
    for values, name in ((graph.input, "state"), (graph.output, "stateN")):
        index = next(i for i, v in enumerate(values) if v.name == name)
        values.remove(values[index])
        values.insert(index, helper.make_tensor_value_info(name, TensorProto.FLOAT, ["batch", 2, 128]))
    audio = next(v for v in graph.input if v.name == "input")
    audio.CopyFrom(helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", "samples"]))
    onnx.checker.check_model(model)
    return model


def stream(session, audio: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Run the fp32 model over a recording: per chunk its input, the state before it, and its probability."""
    chunks = len(audio) // CHUNK
    padded = np.concatenate([np.zeros(CONTEXT, np.float32), audio[:chunks * CHUNK]])
    inputs = np.stack([padded[i * CHUNK:i * CHUNK + CHUNK + CONTEXT] for i in range(chunks)])
    states = np.zeros((chunks, 2, 128), np.float32)
    probs = np.zeros(chunks, np.float32)
    state = np.zeros((1, 2, 128), np.float32)
    sr = np.array(SR, dtype=np.int64)
    for i in range(chunks):
        states[i] = state[0]
        prob, state = session.run(None, {"input": inputs[i:i + 1], "state": state, "sr": sr})
        probs[i] = prob[0, 0]
    return inputs, states, probs


def make_split(session, count: int, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    inputs, states, labels = [], [], []
    have = 0
    while have < count:
        audio, speech = recording(rng)
        x, s, _ = stream(session, audio)
        flags = speech[:len(x) * CHUNK].reshape(len(x), CHUNK).mean(axis=1) >= 0.5
        keep = np.arange(int(rng.integers(STRIDE)), len(x), STRIDE)
        inputs.append(x[keep])
        states.append(s[keep])
        labels.append(flags[keep].astype(np.int64))
        have += len(keep)
    return {"input": np.concatenate(inputs)[:count], "state": np.concatenate(states)[:count],
            "labels": np.concatenate(labels)[:count]}


def _package_dir(common) -> Path:
    """The silero_vad package's folder. Run as `python benchmarks/zoo/prepare.py`, the script's folder
    comes first on sys.path and this file (silero_vad.py) would shadow the package: look past it."""
    import sys

    here = Path(__file__).resolve().parent
    saved = list(sys.path)
    sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != here]
    try:
        return common.package_dir("silero_vad")
    finally:
        sys.path[:] = saved


def prepare(out: Path, sizes: dict) -> dict:
    import onnx
    import onnxruntime as ort

    from zoo import common

    model = batch_first_state(onnx.load(str(_package_dir(common).joinpath(*MODEL_FILE))))
    out.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(out / "model.onnx"))
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    parts = [make_split(session, sizes[split], SEED + i) for i, split in enumerate(("search", "test", "calib"))]
    arrays = {key: np.concatenate([part[key] for part in parts]) for key in parts[0]}
    arrays["sr"] = np.array(SR, dtype=np.int64)
    common.write_splits(out, arrays, sizes)
    speech = {split: round(float(part["labels"].mean()), 3) for split, part in zip(("search", "test", "calib"), parts)}
    return {"sample_rate": SR, "chunk": CHUNK, "context": CONTEXT, "speech_fraction": speech,
            "state": "fp32 LSTM state after the preceding chunks of the same recording (batch-first)",
            "model_change": "state input / stateN output transposed to [N, 2, 128]; the packaged graph is unchanged"}
