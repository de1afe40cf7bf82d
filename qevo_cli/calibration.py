"""Static activation ranges from calibration data.

One onnxruntime pass over the calibration data per method collects what that
method needs for the inputs of every quantizable layer: running min / max, the
histograms of onnxruntime's own percentile and entropy calibrators, or a value
sample for the MSE search. Ranges are kept per method, in memory and on disk
(keyed by the model and calibration data content), since the histogram methods
take seconds. The same pass gives the Gram matrices of the layers' inputs that second-order
rounding needs (recovery.py), kept on disk too.
"""
from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os

import numpy as np
import onnx
import onnxruntime as ort
from onnx import helper
from onnxruntime.quantization.calibrate import HistogramCollector

from .data import Dataset
from .defaults import cache_dir
from .errors import QevoError
from .files import atomic_write_text, temporary_beside
from .model import LoadedModel
from .quantize import mse_activation_range

PERCENTILE = 99.999          # onnxruntime's default for its percentile calibrator
MSE_SAMPLE = 1 << 18         # values kept per tensor for the MSE range search
# onnxruntime's EntropyCalibrater defaults to 128 bins and 128 quantized bins, which leaves its
# KL search a single candidate (the min-max range). 2048 bins, as TensorRT uses, gives it room.
ENTROPY_BINS = 2048
STATS = ("g", "m", "lo", "hi")   # per layer input: Gram matrices, means, least and greatest values
GRAM_VERSION = 4             # of the Gram matrices (and input means and ranges) kept on disk


class ActivationCalibrator:
    """Ranges of the float tensors that feed quantizable layers."""

    def __init__(self, model: LoadedModel, calib: Dataset, session_options: ort.SessionOptions,
                 tensors: list[str] | None = None):
        self.model = model
        self.calib = calib
        self.tensors = tensors if tensors is not None else \
            sorted({name for layer in model.layers for name in layer.activation_inputs})
        self._options = session_options
        self._session: ort.InferenceSession | None = None
        self._ranges: dict[str, dict[str, tuple[float, float]]] = {}
        self._samples: dict[str, np.ndarray] | None = None
        self._every: ActivationCalibrator | None = None
        self._grams: dict[str, tuple[list[np.ndarray], list[np.ndarray]]] = {}
        self._unoptimized = session_options.graph_optimization_level == ort.GraphOptimizationLevel.ORT_DISABLE_ALL

    def range(self, tensor: str, method: str, bits: int) -> tuple[float, float]:
        """(rmin, rmax) for a layer input by `method` ("minmax", "percentile", "entropy", "mse")."""
        if tensor not in self.tensors:
            raise QevoError(f"no layer reads a float activation named {tensor!r}", path=self.model.path,
                            field="tensors")
        if method == "mse":
            key = f"mse{bits}"
            if key not in self._ranges:
                samples = self._mse_samples()
                self._ranges[key] = {name: mse_activation_range(values, bits) for name, values in samples.items()}
            return self._ranges[key][tensor]
        if method not in self._ranges:
            self._ranges[method] = self._cached(method)
        return self._ranges[method][tensor]

    def tensor_range(self, tensor: str) -> tuple[float, float]:
        """Min-max range of any float tensor of the top graph, for a target that quantizes every tensor: from
        the float model run with graph optimizations off, as onnxruntime's calibrators run it, in a pass of its
        own (so collecting them moves no layer input's range)."""
        from .scope import float_tensors

        every = float_tensors(self.model)
        if tensor not in every:
            raise QevoError(f"no float activation tensor named {tensor!r} in the model's top graph",
                            path=self.model.path, field="tensors")
        if self._every is None:
            options = ort.SessionOptions()
            options.intra_op_num_threads = self._options.intra_op_num_threads
            options.log_severity_level = self._options.log_severity_level
            options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
            self._every = ActivationCalibrator(self.model, self.calib, options, sorted(every))
        return self._every.range(tensor, "minmax", 8)

    def gram(self, layer) -> list[np.ndarray]:
        """The Gram matrices E[x xᵀ] of `layer`'s inputs on the calibration data (a mean over input columns),
        in its weight's column order (one per group of a grouped Conv), from the float model. Computed for
        every layer that second-order rounding applies to in one pass, kept on disk by the model's and the
        data's content."""
        return self._input_stats(layer)[0]

    def input_mean(self, layer) -> list[np.ndarray]:
        """The mean of `layer`'s input columns on the calibration data (as `gram`), for bias correction."""
        return self._input_stats(layer)[1]

    def input_range(self, layer) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """The least and greatest value of each of `layer`'s input columns on the calibration data (as `gram`),
        for smoothing."""
        stats = self._input_stats(layer)
        return stats[2], stats[3]

    def _input_stats(self, layer) -> tuple[list[np.ndarray], ...]:
        from .recovery import MAX_PATCHES, supports

        if layer.name in self._grams:
            return self._grams[layer.name]
        if not supports(layer):
            raise QevoError(f"layer {layer.name!r}: gptq rounding applies to Conv, MatMul and Gemm weights of the "
                            "top graph", field="rounding")
        key = json.dumps({"model": self.model.digest, "calib": self.calib.digest, "version": GRAM_VERSION,
                          "patches": MAX_PATCHES})
        folder = cache_dir() / "gram" / hashlib.sha256(key.encode()).hexdigest()[:32]
        path = folder / (hashlib.sha256(layer.name.encode()).hexdigest()[:24] + ".npz")
        try:
            with np.load(path) as stored:
                count = len(stored.files) // len(STATS)
                self._grams[layer.name] = tuple([stored[f"{tag}{i}"] for i in range(count)] for tag in STATS)
            return self._grams[layer.name]
        except (OSError, ValueError, KeyError):
            pass  # absent or damaged: compute every layer's again
        computed = self._compute_grams([l for l in self.model.layers if supports(l)])
        folder.mkdir(parents=True, exist_ok=True)
        for name, stats in computed.items():
            target = folder / (hashlib.sha256(name.encode()).hexdigest()[:24] + ".npz")
            temporary = temporary_beside(target)
            with open(temporary, "wb") as out:
                np.savez(out, **{f"{tag}{i}": value for tag, values in zip(STATS, stats)
                                 for i, value in enumerate(values)})
            os.replace(temporary, target)
        self._grams.update(computed)
        return self._grams[layer.name]

    def _compute_grams(self, layers) -> dict[str, tuple[list[np.ndarray], ...]]:
        from onnx import helper as onnx_helper

        from .recovery import input_columns

        nodes = {node.name: node for node in self.model.proto.graph.node}
        attributes = {layer.name: {a.name: onnx_helper.get_attribute_value(a) for a in nodes[layer.node_name].attribute}
                      for layer in layers}
        sums: dict[str, list[np.ndarray]] = {}
        totals: dict[str, list[np.ndarray]] = {}
        lows: dict[str, list[np.ndarray]] = {}
        highs: dict[str, list[np.ndarray]] = {}
        counts: dict[str, int] = {}
        rng = np.random.default_rng(0)
        for batch in self._batches():
            for layer in layers:
                columns = input_columns(layer.op_type, batch[layer.input], attributes[layer.name],
                                        layer.weight_shape, layer.channel_axis, rng)
                grams = sums.setdefault(layer.name, [np.zeros((len(c), len(c))) for c in columns])
                means = totals.setdefault(layer.name, [np.zeros(len(c)) for c in columns])
                low = lows.setdefault(layer.name, [np.full(len(c), np.inf) for c in columns])
                high = highs.setdefault(layer.name, [np.full(len(c), -np.inf) for c in columns])
                for g, part in enumerate(columns):
                    grams[g] += part @ part.T
                    means[g] += part.sum(axis=1)
                    if part.shape[1]:
                        np.minimum(low[g], part.min(axis=1), out=low[g])
                        np.maximum(high[g], part.max(axis=1), out=high[g])
                counts[layer.name] = counts.get(layer.name, 0) + columns[0].shape[1]
        return {name: ([(g / max(counts[name], 1)).astype(np.float32) for g in grams],
                       [t / max(counts[name], 1) for t in totals[name]],
                       [np.where(np.isfinite(v), v, 0.0) for v in lows[name]],
                       [np.where(np.isfinite(v), v, 0.0) for v in highs[name]]) for name, grams in sums.items()}

    def _cached(self, method: str) -> dict[str, tuple[float, float]]:
        key = json.dumps({"model": self.model.digest, "calib": self.calib.digest, "method": method,
                          "tensors": self.tensors, "entropy_bins": ENTROPY_BINS, "percentile": PERCENTILE,
                          **({"optimizations": "off"} if self._unoptimized else {})})
        path = cache_dir() / "calibration" / (hashlib.sha256(key.encode()).hexdigest()[:32] + ".json")
        try:
            stored = json.loads(path.read_text())
            return {name: (float(lo), float(hi)) for name, (lo, hi) in stored.items()}
        except (OSError, ValueError, TypeError):
            pass  # absent or damaged: compute again
        ranges = self._compute(method)
        atomic_write_text(path, json.dumps(ranges))
        return ranges

    def _batches(self):
        if self._session is None:
            augmented = onnx.ModelProto()
            augmented.CopyFrom(self.model.proto)
            present = {o.name for o in augmented.graph.output}
            for name in self.tensors:
                if name not in present:
                    augmented.graph.output.append(helper.make_empty_tensor_value_info(name))
            self._session = ort.InferenceSession(augmented.SerializeToString(), self._options,
                                                 providers=["CPUExecutionProvider"])
        for feed in self.calib.batches():
            values = self._session.run(self.tensors, feed)
            yield {name: np.asarray(value, dtype=np.float32) for name, value in zip(self.tensors, values)}

    def _compute(self, method: str) -> dict[str, tuple[float, float]]:
        if method == "minmax":
            lo = {name: np.inf for name in self.tensors}
            hi = {name: -np.inf for name in self.tensors}
            for batch in self._batches():
                for name, value in batch.items():
                    lo[name] = min(lo[name], float(np.min(value)))
                    hi[name] = max(hi[name], float(np.max(value)))
            return {name: (lo[name], hi[name]) for name in self.tensors}
        # onnxruntime's histogram collector does the percentile and entropy work.
        if method == "percentile":
            collector = HistogramCollector("percentile", symmetric=False, num_bins=2048, num_quantized_bins=128,
                                           percentile=PERCENTILE, scenario="same")
        else:
            collector = HistogramCollector("entropy", symmetric=False, num_bins=ENTROPY_BINS, num_quantized_bins=128,
                                           percentile=PERCENTILE, scenario="same")
        with contextlib.redirect_stdout(io.StringIO()):  # it prints progress to stdout
            for batch in self._batches():
                collector.collect(batch)
            result = collector.compute_collection_result()
        return {name: (float(result[name][0]), float(result[name][1])) for name in self.tensors}

    def _mse_samples(self) -> dict[str, np.ndarray]:
        if self._samples is None:
            # one generator per tensor, seeded by its name: a tensor's sample does not depend on which others
            # are collected with it
            rngs = {name: np.random.default_rng(int(hashlib.sha256(name.encode()).hexdigest()[:8], 16))
                    for name in self.tensors}
            parts: dict[str, list[np.ndarray]] = {name: [] for name in self.tensors}
            per_batch = max(1, MSE_SAMPLE * self.calib.batch_size // max(self.calib.size, 1))
            for batch in self._batches():
                for name, value in batch.items():
                    flat = value.reshape(-1)
                    if flat.size > per_batch:
                        flat = rngs[name].choice(flat, per_batch, replace=False)
                    parts[name].append(flat)
            self._samples = {name: np.concatenate(chunks) for name, chunks in parts.items()}
        return self._samples
