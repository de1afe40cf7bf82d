"""Activation smoothing (SmoothQuant) on the zoo, and qevo's uniform W8A8 with recovery beside NNCF's INT8.

    python benchmarks/smoothing_zoo.py minilm ppocr-rec ... [--zoo zoo-data] [--table]

Two parts per model, every score on the test split:
1. Uniform W4A8 and W3A8 (per-channel weights, layer inputs quantized, min-max ranges, as
   benchmarks/recovery_zoo.py), with smoothing at alpha 0.5 and 0.8 on every MatMul / Gemm layer it applies
   to, alone and on top of `all` (gptq, the output-mse range, bias correction). W4A16 is left out: 16-bit
   activations have no outliers worth moving.
2. Uniform W8A8 on `arm-neon` (every op onnxruntime's CPU quantizer quantizes, per-channel int8 weights:
   the model NNCF and `quantize_static` also produce): rounding to nearest, `all`, smoothing and `all` with
   smoothing. The smoothing strength is chosen on the search split (0.5 or 0.8, the better there) and
   reported on the test split. Every W8A8 policy is exported and the file measured again.
Results go to docs/benchmarks/smoothing_zoo.json; NNCF's own numbers are in docs/benchmarks/nncf/.
"""
from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from zoo.common import per_model_main, test_paths  # noqa: E402

DOCS = Path(__file__).resolve().parents[1] / "docs" / "benchmarks"
OUT = DOCS / "smoothing_zoo.json"
UNIFORM = {"W4A8": ("int4", "int8"), "W3A8": ("int3", "int8")}
ALPHAS = (0.5, 0.8)


def _recipe(choice, layer, recovered: bool, alpha: float):
    from qevo_cli.recovery import corrects_bias, supports
    from qevo_cli.smoothing import smooths

    if recovered and supports(layer):
        choice = replace(choice, rounding="gptq", weight_range="output-mse", bias_correction=corrects_bias(layer))
    if alpha and smooths(layer) and choice.weight_is_int and choice.activation == "int8":
        choice = replace(choice, smoothing=alpha)
    return choice


def _apply(policy, layers, recovered: bool, alpha: float):
    from qevo_cli.policy import Policy

    by_name = {layer.name: layer for layer in layers}
    return Policy({name: _recipe(choice, by_name[name], recovered, alpha) for name, choice in policy.layers.items()},
                  tensors=policy.tensors, scope=policy.scope)


def measure(name: str, zoo: Path) -> dict:
    os.environ["QEVO_CACHE_DIR"] = tempfile.mkdtemp(prefix="qevo-smoothing-")
    from qevo_cli.export import export_onnx
    from qevo_cli.genome import Allowed, space_for
    from qevo_cli.policy import LayerChoice, Policy
    from qevo_cli.profiles import load_profile, uniform_policy
    from qevo_cli.smoothing import smooths
    from qevo_cli.workspace import open_workspace

    model_path, data, calib, metric = test_paths(name, zoo)
    test = open_workspace(model_path, data, calib, metric)
    evaluator = test.evaluator(threads=2)
    layers = test.model.layers
    row = {"model": name, "metric": evaluator.metric.label, "samples": test.data.size, "fp32": evaluator.fp32_score,
           "layers": len(layers), "smoothable": sum(smooths(layer) for layer in layers), "layer_inputs": {},
           "w8a8": {}}
    for label, (weight, activation) in UNIFORM.items():
        base = Policy({layer.name: LayerChoice(weight, "fp32" if layer.weight_only else activation)
                       for layer in layers if layer.weight})
        for recovered in (False, True):
            for alpha in (0.0, *ALPHAS):
                recipe = ("all" if recovered else "nearest") + (f"+sq{alpha}" if alpha else "")
                row["layer_inputs"][f"{label} {recipe}"] = score = evaluator.evaluate(_apply(base, layers, recovered,
                                                                                             alpha))
                print(f"[{name}] {label} {recipe}: {score:.2f}", flush=True)

    profile = load_profile("arm-neon")
    space = space_for(test.model, profile, Allowed())
    w8a8 = space.with_tensors_at(uniform_policy(profile, layers, LayerChoice("int8", "int8"))[0], "int8")
    search_evaluator = None
    if name != "digits":
        folder = zoo / name
        search_evaluator = open_workspace(folder / "model.onnx", folder / "search.npz", calib, metric).evaluator(threads=2)
    for recovered in (False, True):
        alpha = 0.0
        if row["smoothable"] and search_evaluator is not None:   # the strength chosen on the search split
            scores = {a: search_evaluator.evaluate(_apply(w8a8, layers, recovered, a)) for a in ALPHAS}
            alpha = max(scores, key=scores.get)
        for chosen in (0.0, alpha) if alpha else (0.0,):
            recipe = ("all" if recovered else "nearest") + (f"+sq{chosen}" if chosen else "")
            policy = _apply(w8a8, layers, recovered, chosen)
            start = time.perf_counter()
            score = evaluator.evaluate(policy)
            with tempfile.TemporaryDirectory() as tmp:
                report = export_onnx(evaluator, policy, Path(tmp) / "m.onnx", expected=score)
            row["w8a8"][recipe] = {"metric": score, "exported": report.measured,
                                   "seconds": time.perf_counter() - start}
            print(f"[{name}] arm-neon W8A8 {recipe}: {score:.2f} (file {report.measured:.2f})", flush=True)
    return row


def print_table(rows: list[dict]) -> None:
    recipes = ["nearest", *(f"nearest+sq{a}" for a in ALPHAS), "all", *(f"all+sq{a}" for a in ALPHAS)]
    print("| model (smoothable layers) | fp32 | uniform | " + " | ".join(recipes) + " |")
    print("|---|---:|---|" + "---:|" * len(recipes))
    for r in rows:
        for label in UNIFORM:
            print(f"| {r['model']} ({r['smoothable']} of {r['layers']}) | {r['fp32']:.2f} | {label} | " +
                  " | ".join(f"{r['layer_inputs'][f'{label} {k}']:.2f}" for k in recipes) + " |")
    print()
    static = {r["model"]: r["static"] for r in json.loads((DOCS / "scope_check.json").read_text())}
    print("| model | fp32 | NNCF INT8, its defaults | `quantize_static` W8A8 | qevo W8A8: nearest | all | "
          "nearest + smoothing | all + smoothing | exported files (max difference) |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        nncf = DOCS / "nncf" / f"results_{r['model']}.json"
        nncf_score = json.loads(nncf.read_text()).get("int8_test") if nncf.exists() else None
        cells = []
        for kind in ("nearest", "all"):
            cells.append(f"{r['w8a8'][kind]['metric']:.2f}")
        for kind in ("nearest", "all"):
            found = [k for k in r["w8a8"] if k.startswith(kind + "+sq")]
            cells.append(f"{r['w8a8'][found[0]]['metric']:.2f} ({found[0].split('+')[1]})" if found else "-")
        difference = max(abs(e["metric"] - e["exported"]) for e in r["w8a8"].values())
        print(f"| {r['model']} | {r['fp32']:.2f} | {'-' if nncf_score is None else f'{nncf_score:.2f}'} | "
              f"{static.get(r['model'], float('nan')):.2f} | " + " | ".join(cells) + f" | {difference:.2g} |")


def main(argv=None) -> int:
    return per_model_main(__doc__.splitlines()[0], OUT, measure, print_table, argv)


if __name__ == "__main__":
    sys.exit(main())
