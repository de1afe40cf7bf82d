"""What uniform 2:4 sparsity costs and buys on the zoo's models, measured on their test split.

    python benchmarks/sparsity_zoo.py [orientation ppocr-cls ppocr-det ppocr-rec ...]

Per model: fp32, uniform W8A8 on nvidia-trt (int8 weights and activations, per-channel), and the same with
every layer that can hold 2:4 sparsity at 2:4, its weights pruned by magnitude or compensated with gptq
rounding (SparseGPT's reconstruction; the other layers rounded to nearest), each measured in onnxruntime on the test split and costed on
nvidia-trt (latency with the 2x sparse math, size with the compressed weights). Results go to
docs/benchmarks/sparsity_zoo.json.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from zoo.common import ZOO_DIR, measure_models, test_paths  # noqa: E402

OUT = Path(__file__).resolve().parents[1] / "docs" / "benchmarks" / "sparsity_zoo.json"


def measure(name: str, zoo: Path) -> dict:
    os.environ["QEVO_CACHE_DIR"] = tempfile.mkdtemp(prefix="qevo-sparsity-")
    from qevo_cli.cost import model_cost
    from qevo_cli.policy import LayerChoice, Policy
    from qevo_cli.profiles import load_profile
    from qevo_cli.sparsity import applies
    from qevo_cli.workspace import open_workspace

    workspace = open_workspace(*test_paths(name, zoo))
    evaluator = workspace.evaluator(threads=2)
    layers = workspace.model.layers
    trt = load_profile("nvidia-trt")
    sparse_layers = [layer.name for layer in layers if applies(layer, "2:4")]
    quantized = [layer for layer in layers if trt.offers(layer, LayerChoice("int8", "int8"))]
    macs = sum(layer.macs for layer in layers)
    row = {"model": name, "layers": len(layers), "sparse_layers": len(sparse_layers),
           "sparse_mac_share": sum(layer.macs for layer in layers if layer.name in sparse_layers) / max(macs, 1),
           "policies": {}}

    def policy(rounding: str | None) -> Policy:
        """Uniform W8A8; with `rounding`, every layer that can hold it at 2:4, pruned as that rounding prunes."""
        sparse = set(sparse_layers) if rounding else set()
        return Policy({layer.name: LayerChoice("int8", "int8", rounding=rounding if layer.name in sparse else "nearest",
                                               sparsity="2:4" if layer.name in sparse else "dense")
                       for layer in quantized})

    for label, candidate in (("fp32", Policy({})), ("W8A8", policy(None)), ("W8A8 2:4 magnitude", policy("nearest")),
                             ("W8A8 2:4 gptq", policy("gptq"))):
        start = time.perf_counter()
        score = evaluator.evaluate(candidate)
        cost = model_cost(layers, candidate, trt, workspace.model.other_bytes)
        row["policies"][label] = {"metric": score, "latency_us": cost.latency_s * 1e6,
                                  "size_kb": cost.weight_bytes / 1e3, "seconds": time.perf_counter() - start}
        print(f"  {name} {label}: {score:.3f}, {cost.latency_s * 1e6:.1f} us, {cost.weight_bytes / 1e3:.1f} kB",
              flush=True)
    return row


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", default=["orientation", "ppocr-cls", "ppocr-det", "ppocr-rec"])
    parser.add_argument("--zoo", type=Path, default=ZOO_DIR)
    args = parser.parse_args(argv)
    rows = measure_models(args.names, OUT, lambda name: measure(name, args.zoo))
    print(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
