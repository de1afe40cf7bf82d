"""What the peers' runners share (each runs in a venv of its own): the zoo's data splits in qevo's batches,
its metrics, and onnxruntime sessions with qevo's thread settings. numpy and onnxruntime only."""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort

BATCH_BYTES = 4 << 20   # as qevo_cli/data.py
MAX_BATCH = 256
THREADS = 2


# ----------------------------------------------------------------------------------------------- data

class Split:
    def __init__(self, path: Path, input_names: list[str], batch: int | None = None):
        z = np.load(path)
        self.inputs = {k: z[k] for k in input_names}
        self.labels = z["labels"] if "labels" in z.files else None
        first = next(a for a in self.inputs.values() if a.ndim)
        self.n = len(first)
        if batch is None:
            sample_bytes = sum(a[0].nbytes for a in self.inputs.values() if a.ndim) or 1
            batch = int(max(1, min(MAX_BATCH, BATCH_BYTES // sample_bytes)))
        self.batch = batch

    def rows(self, idx: np.ndarray) -> "Split":
        s = object.__new__(Split)
        s.inputs = {k: (v[idx] if v.ndim else v) for k, v in self.inputs.items()}
        s.labels = self.labels[idx] if self.labels is not None else None
        s.n, s.batch = len(idx), min(self.batch, len(idx))
        return s

    def subset(self, count: int) -> "Split":
        if count >= self.n:
            return self
        return self.rows(np.unique(np.linspace(0, self.n - 1, count).round().astype(int)))

    def batches(self):
        for i in range(0, self.n, self.batch):
            yield {k: (v[i:i + self.batch] if v.ndim else v) for k, v in self.inputs.items()}


def load_metric(spec: str):
    if spec == "accuracy":
        return lambda outs, labels: 100.0 * float(np.mean(np.asarray(outs[0]).argmax(axis=1) ==
                                                          np.asarray(labels).reshape(-1)))
    file, func = spec.rsplit(":", 1)
    mod_spec = importlib.util.spec_from_file_location(Path(file).stem + "_metric", file)
    mod = importlib.util.module_from_spec(mod_spec)
    sys.path.insert(0, str(Path(file).parent))
    mod_spec.loader.exec_module(mod)
    return getattr(mod, func)


def run_outputs(session, split: Split) -> list[np.ndarray]:
    outs = None
    for batch in split.batches():
        res = session.run(None, batch)
        if outs is None:
            outs = [[] for _ in res]
        for i, r in enumerate(res):
            outs[i].append(np.asarray(r))
    return [np.concatenate(o, axis=0) if o[0].ndim else o[-1] for o in outs]


def session_options():
    so = ort.SessionOptions()
    so.intra_op_num_threads = THREADS
    so.inter_op_num_threads = 1
    return so


def plain_session(path: str):
    return ort.InferenceSession(path, session_options(), providers=["CPUExecutionProvider"])
