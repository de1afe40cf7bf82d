"""Accuracy recovery against rounding to nearest, on the digits model and the zoo.

    python benchmarks/recovery_zoo.py digits orientation ppocr-cls ... [--zoo zoo-data] [--table]

For each model, uniform W4A8, W3A8 and W4A16 (per-channel weights, layer inputs quantized, min-max ranges),
each with six recipes on every layer they apply to (the others round to nearest over the full range):
- nearest: rounding to nearest over the full range;
- bc: bias correction;
- omse: the clipping with the least output error on the calibration inputs (weight_range output-mse);
- gptq: second-order rounding;
- gptq+omse: both;
- all: gptq, omse and bias correction.
Measured on the test split (digits: the bundled eval.npz), Gram matrices and means from the calibration
split. The W4 policies are also exported as ONNX files (int4 codes behind DequantizeLinear) and the file
measured again (no ONNX type stores int3, so W3 is simulated only). Seconds: the one calibration pass
that collects every layer's Gram matrix and mean, and each recipe alone at W4 (its rounded weights and its
bias shift), per layer.
Results go to docs/benchmarks/recovery_zoo.json.
"""
from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from zoo.common import per_model_main, test_paths  # noqa: E402

OUT = Path(__file__).resolve().parents[1] / "docs" / "benchmarks" / "recovery_zoo.json"
UNIFORM = {"W4A8": ("int4", "int8"), "W3A8": ("int3", "int8"), "W4A16": ("int4", "int16")}
RECIPES = {"nearest": ("nearest", False, "minmax"), "bc": ("nearest", True, "minmax"),
           "omse": ("nearest", False, "output-mse"), "gptq": ("gptq", False, "minmax"),
           "gptq+omse": ("gptq", False, "output-mse"), "all": ("gptq", True, "output-mse")}


def measure(name: str, zoo: Path) -> dict:
    os.environ["QEVO_CACHE_DIR"] = tempfile.mkdtemp(prefix="qevo-recovery-")   # Gram matrices computed here
    from qevo_cli.export import export_onnx
    from qevo_cli.policy import LayerChoice, Policy
    from qevo_cli.quantize import quantize_weight
    from qevo_cli.recovery import corrects_bias, output_shift, supports
    from qevo_cli.workspace import open_workspace

    model_path, data, calib, metric = test_paths(name, zoo)
    workspace = open_workspace(model_path, data, calib, metric)
    evaluator = workspace.evaluator(threads=2)
    layers = workspace.model.layers
    recoverable = [layer for layer in layers if supports(layer)]
    row = {"model": name, "metric": evaluator.metric.label, "samples": workspace.data.size,
           "fp32": evaluator.fp32_score, "layers": len(layers), "recoverable": len(recoverable),
           "bias_corrected": sum(corrects_bias(layer) for layer in layers), "results": {}, "seconds": {}}
    start = time.perf_counter()
    for layer in recoverable:
        evaluator.calibrator.gram(layer)   # the first call collects every layer's in one pass
    row["seconds"]["calibration_pass"] = time.perf_counter() - start
    for label, (weight, activation) in UNIFORM.items():
        for recipe, (rounding, correction, weight_range) in RECIPES.items():
            policy = Policy({layer.name: LayerChoice(
                weight, "fp32" if layer.weight_only else activation,
                rounding=rounding if supports(layer) else "nearest",
                weight_range=weight_range if supports(layer) else "minmax",
                bias_correction=correction and corrects_bias(layer)) for layer in layers if layer.weight})
            start = time.perf_counter()
            for layer in recoverable if label == "W4A8" else ():   # the recipe alone, timed once per model
                choice, values = policy.choice(layer.name), evaluator.editor.weight_values(layer)
                gram = evaluator.calibrator.gram(layer) if rounding == "gptq" or weight_range != "minmax" else None
                rounded = quantize_weight(values, choice, layer.channel_axis, gram)
                if choice.bias_correction:
                    output_shift(rounded, values, layer.channel_axis, evaluator.calibrator.input_mean(layer))
            per_layer = (time.perf_counter() - start) / max(len(recoverable), 1)
            score = evaluator.evaluate(policy)
            result = {"metric": score, **({"seconds_per_layer": per_layer} if label == "W4A8" else {})}
            if weight == "int4":
                with tempfile.TemporaryDirectory() as tmp:
                    report = export_onnx(evaluator, policy, Path(tmp) / "m.onnx", expected=score)
                result["exported"] = report.measured
            row["results"][f"{label} {recipe}"] = result
            print(f"[{name}] {label} {recipe}: {score:.2f}", flush=True)
    return row


def print_table(rows: list[dict]) -> None:
    print("| model (metric, test samples) | layers (recoverable) | fp32 | uniform | " + " | ".join(RECIPES) +
          " | loss won back by the best | exported (best, W4) |")
    print("|---|---:|---:|---|" + "---:|" * len(RECIPES) + "---:|---:|")
    for r in rows:
        for label in UNIFORM:
            scores = {recipe: r["results"][f"{label} {recipe}"]["metric"] for recipe in RECIPES}
            best = max(scores, key=scores.get)
            loss = r["fp32"] - scores["nearest"]
            won = (scores[best] - scores["nearest"]) / loss if loss > 0 else float("nan")
            exported = r["results"][f"{label} {best}"].get("exported")
            print(f"| {r['model']} ({r['metric']}, {r['samples']}) | {r['layers']} ({r['recoverable']}) | "
                  f"{r['fp32']:.2f} | {label} | " + " | ".join(f"{scores[k]:.2f}" for k in RECIPES) +
                  f" | {won:.0%} ({best}) | {'-' if exported is None else f'{exported:.2f}'} |")
    print()
    print("| model | calibration pass s | s per layer (W4A8): " + " | ".join(RECIPES) + " |")
    print("|---|---:|" + "---:|" * len(RECIPES))
    for r in rows:
        per = [r["results"][f"W4A8 {recipe}"]["seconds_per_layer"] for recipe in RECIPES]
        print(f"| {r['model']} | {r['seconds']['calibration_pass']:.1f} | " + " | ".join(f"{s:.3f}" for s in per) + " |")


def main(argv=None) -> int:
    return per_model_main(__doc__.splitlines()[0], OUT, measure, print_table, argv)


if __name__ == "__main__":
    sys.exit(main())
