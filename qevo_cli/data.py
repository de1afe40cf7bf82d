"""Evaluation and calibration data: `.npz` files whose keys are the model's input names.

Everything is checked against the model before anything runs: names, dtypes,
shapes, sample counts, labels and finiteness.
"""
from __future__ import annotations

import hashlib
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from .errors import QevoError, first_line
from .model import InputSpec, LoadedModel

LABELS_KEY = "labels"
# Batches of about this many input bytes: a fresh session for each variant allocates its
# buffers on the first run, and large batches make that (and cache misses) dominate.
BATCH_BYTES = 4 << 20
MAX_BATCH = 256


@dataclass
class Dataset:
    """Model inputs stacked on axis 0 (one row per sample) and optional labels.

    A model input of rank 0 (a flag, a sample rate) holds one value used for every batch.
    """

    path: Path
    inputs: dict[str, np.ndarray]
    labels: np.ndarray | None
    digest: str
    batch_size: int
    fixed_batch: bool = False     # the model's batch dimension is fixed: batches are exactly batch_size

    @property
    def size(self) -> int:
        return next((len(array) for array in self.inputs.values() if array.ndim), 1)

    def subset_rows(self, count: int) -> np.ndarray:
        """Indices of about `count` samples spread evenly over the set (whole batches in order when the
        model's batch is fixed)."""
        if self.fixed_batch:
            count = -(-count // self.batch_size) * self.batch_size
        if count >= self.size:
            return np.arange(self.size)
        if self.fixed_batch:
            return np.arange(count)
        return np.unique(np.linspace(0, self.size - 1, count).round().astype(int))

    def rows(self, indices: np.ndarray) -> "Dataset":
        """The samples at `indices`, in that order."""
        if len(indices) == self.size and np.array_equal(indices, np.arange(self.size)):
            return self
        inputs = {name: array[indices] if array.ndim else array for name, array in self.inputs.items()}
        labels = self.labels[indices] if self.labels is not None else None
        digest = hashlib.sha256(self.digest.encode() + np.ascontiguousarray(indices).tobytes()).hexdigest()
        return Dataset(self.path, inputs, labels, digest, min(self.batch_size, len(indices)), self.fixed_batch)

    def subset(self, count: int) -> "Dataset":
        """About `count` samples spread evenly over the set."""
        return self.rows(self.subset_rows(count))

    def batches(self) -> Iterator[dict[str, np.ndarray]]:
        for start in range(0, self.size, self.batch_size):
            yield {name: array[start:start + self.batch_size] if array.ndim else array
                   for name, array in self.inputs.items()}


def load_data(path: str | Path, model: LoadedModel, batch_size: int | None = None) -> Dataset:
    """Read an `.npz` file and validate it against the model's inputs.

    `batch_size` defaults to what keeps a batch near BATCH_BYTES of input.
    """
    path = Path(path)
    if not path.exists():
        raise QevoError("data file not found", path=path)
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {key: archive[key] for key in archive.files}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as err:
        raise QevoError(f"not a readable .npz file ({type(err).__name__}: {first_line(err, '')})",
                        path=path) from None
    labels = arrays.pop(LABELS_KEY, None)
    expected = {spec.name: spec for spec in model.inputs}
    for key in arrays:
        if key not in expected:
            raise QevoError(f"key {key!r} is not a model input; expected {_names(model.inputs)} and optionally "
                            f"{LABELS_KEY!r}", path=path, field=key)
    for name in expected:
        if name not in arrays:
            raise QevoError(f"missing model input {name!r}; the file has {sorted(arrays) or 'no inputs'}",
                            path=path, field=name)
    counts = set()
    fixed_batch = 1
    batched = [spec for spec in model.inputs if spec.shape]
    for spec in model.inputs:
        _check_array(spec, arrays[spec.name], path)
    for spec in batched:
        counts.add(len(arrays[spec.name]))
        if isinstance(spec.shape[0], int):
            fixed_batch = spec.shape[0]
    if not batched:
        counts.add(1)
    if len(counts) != 1:
        raise QevoError(f"inputs hold different sample counts {sorted(counts)}; every input needs one row per sample",
                        path=path)
    count = counts.pop()
    if count == 0:
        raise QevoError("no samples (axis 0 is empty)", path=path)
    if labels is not None:
        if labels.ndim == 0:
            raise QevoError("a single value, expected one label per sample (axis 0)", path=path, field=LABELS_KEY)
        if len(labels) != count:
            raise QevoError(f"{len(labels)} labels for {count} samples", path=path, field=LABELS_KEY)
        if labels.dtype.kind == "f" and not np.all(np.isfinite(labels)):
            raise QevoError("labels contain NaN or Inf", path=path, field=LABELS_KEY)
    # A model with a fixed batch dim runs in batches of exactly that size.
    if any(isinstance(spec.shape[0], int) for spec in batched):
        if count % fixed_batch:
            raise QevoError(f"{count} samples do not fill batches of the model's fixed batch size {fixed_batch}",
                            path=path)
        batch_size = fixed_batch
    elif batch_size is None:
        sample_bytes = sum(arrays[spec.name][0].nbytes for spec in batched) or 1
        batch_size = int(max(1, min(MAX_BATCH, BATCH_BYTES // sample_bytes)))
    return Dataset(path=path, inputs={spec.name: arrays[spec.name] for spec in model.inputs}, labels=labels,
                   digest=_digest(arrays, labels), batch_size=batch_size,
                   fixed_batch=any(isinstance(spec.shape[0], int) for spec in batched))


def _names(inputs: list[InputSpec]) -> str:
    return ", ".join(repr(spec.name) for spec in inputs)


def _check_array(spec: InputSpec, array: np.ndarray, path: Path) -> None:
    if array.dtype != spec.dtype:
        raise QevoError(f"dtype {array.dtype}, expected {spec.dtype} as the model input {spec.describe()}",
                        path=path, field=spec.name)
    if array.ndim != len(spec.shape):
        raise QevoError(f"shape {list(array.shape)} has {array.ndim} dims, expected {len(spec.shape)} as the model "
                        f"input {spec.describe()} (samples stacked on axis 0)", path=path, field=spec.name)
    for axis, (got, want) in enumerate(zip(array.shape, spec.shape)):
        if axis == 0:
            continue  # samples; a fixed model batch is checked by the caller
        if isinstance(want, int) and got != want:
            raise QevoError(f"shape {list(array.shape)}, expected {spec.describe()} (axis {axis} must be {want})",
                            path=path, field=spec.name)
    if array.dtype.kind == "f" and not np.all(np.isfinite(array)):
        bad = int(np.count_nonzero(~np.isfinite(array)))
        raise QevoError(f"contains {bad} NaN or Inf value(s)", path=path, field=spec.name)


def _digest(arrays: dict[str, np.ndarray], labels: np.ndarray | None) -> str:
    h = hashlib.sha256()
    for key in sorted(arrays):
        h.update(key.encode())
        h.update(str(arrays[key].dtype).encode())
        h.update(str(arrays[key].shape).encode())
        h.update(np.ascontiguousarray(arrays[key]).tobytes())
    if labels is not None:
        h.update(b"labels")
        h.update(np.ascontiguousarray(labels).tobytes())
    return h.hexdigest()
