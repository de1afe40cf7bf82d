"""qevo: search per-layer quantization policies for ONNX models on named hardware targets.

The library API; the `qevo` command line is a thin layer over it (`qevo_cli.cli`).
"""
from __future__ import annotations

from .data import Dataset, load_data
from .errors import QevoError
from .evaluate import Evaluator
from .layers import Layer
from .metrics import Metric, resolve_metric
from .model import LoadedModel, load_model
from .policy import LayerChoice, Policy
from .sensitivity import SensitivityTable, measure_sensitivity
from .workspace import Workspace, open_workspace

__version__ = "0.1.0"

__all__ = [
    "Dataset", "Evaluator", "Layer", "LayerChoice", "LoadedModel", "Metric", "Policy", "QevoError",
    "SensitivityTable", "Workspace", "load_data", "load_model", "measure_sensitivity", "open_workspace",
    "resolve_metric", "__version__",
]
