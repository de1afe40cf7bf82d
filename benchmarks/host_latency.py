"""The cost model against measured latency on this machine: a profile fitted to timed policies, and intel-vnni
as shipped, each predicting policies the fit has not seen.

    python benchmarks/host_latency.py orientation ppocr-cls ... [--policies 80] [--table]

Per zoo model, --policies policies of the `host` search space (its defaults: int2/int4/int8/fp16 weights,
int8/fp32 tensors where onnxruntime's CPU quantizer quantizes): fp32, uniform W8A8, every weight format on
every layer (with int8 tensors and weight-only), then random mixes, each timed as `--target host` times it
(its exported model in onnxruntime, one thread, median of repeated runs on one sample). Run on a quiet
machine: nothing else should share the cores. The uniform policies and every other random mix fit a profile
from `host` (qevo_cli/fit_models.py); the other mixes are predicted by the fitted profile and by the shipped
`intel-vnni`, unfitted, and compared with their measurements: Spearman rank correlation and median relative
error. The predicted mixes are timed a second time, to show how well one timing ranks them against another
(the most a prediction can reach). Results go to docs/benchmarks/host_latency.json and a plot to
docs/benchmarks/host_latency.png.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from zoo.common import ZOO_DIR, measure_models, test_paths  # noqa: E402

DOCS = Path(__file__).resolve().parents[1] / "docs" / "benchmarks"
OUT = DOCS / "host_latency.json"
POINTS = DOCS / "host_latency_points.json"   # every timing, for other fits (.gitignore: *_points.json)


def measure(name: str, zoo: Path, count: int) -> dict:
    os.environ["QEVO_CACHE_DIR"] = tempfile.mkdtemp(prefix="qevo-host-latency-")
    from scipy.stats import spearmanr

    from qevo_cli.cost import model_cost
    from qevo_cli.errors import QevoError
    from qevo_cli.fit_models import ModelMeasurement, fit_to_models
    from qevo_cli.genome import Allowed, space_for
    from qevo_cli.latency import HostTimer, host_name
    from qevo_cli.policy import LayerChoice, Policy
    from qevo_cli.profiles import load_profile, uniform_policy
    from qevo_cli.seeding import uniform_rows
    from qevo_cli.workspace import open_workspace

    model_path, data, calib, metric = test_paths(name, zoo)
    workspace = open_workspace(model_path, data, calib, metric)
    evaluator = workspace.evaluator(threads=1)
    layers = workspace.model.layers
    host = load_profile("host")
    space = space_for(workspace.model, host, Allowed(("int2", "int4", "int8", "fp16"), ("int8", "int16", "fp16")))
    rng = np.random.default_rng(0)
    policies = [Policy({}), space.with_tensors_at(uniform_policy(host, layers, LayerChoice("int8", "int8"))[0], "int8")]
    seen = {p.key() for p in policies}
    # every weight format on every layer, with int8 tensors and weight-only: what a search measures among
    # its first policies (seeding.uniform_rows, the ILP's ends), and what pins each compute entry's terms
    for row in uniform_rows(space):
        for fmt in ("int8", "fp32"):
            policy = space.with_tensors_at(space.decode(row), fmt)
            if policy.key() not in seen:
                seen.add(policy.key())
                policies.append(policy)
    anchors = len(policies)
    while len(policies) < count:
        # mixes from all-low to all-high: each gene's option drawn around a random level
        level = rng.uniform(0, 1)
        row = np.clip(np.round(level * space.upper + rng.normal(0, 0.35, space.n_var) * space.upper), 0, space.upper)
        policy = space.decode(row.astype(int))
        if policy.key() not in seen:
            seen.add(policy.key())
            policies.append(policy)
    timer = HostTimer(evaluator)
    start = time.perf_counter()
    timings = [timer(policy) for policy in policies]
    seconds = time.perf_counter() - start
    glue, outputs, converted = dict(space.tensors.traffic), space.tensors.outputs, space.tensors.converted
    rows = [ModelMeasurement(f"#{i}", p, t.median_ms / 1e3) for i, (p, t) in enumerate(zip(policies, timings))]
    # fp32, uniform W8A8 and the uniform policies are what anyone fitting a profile times first: they fit it,
    # and so does every other random mix; the other random mixes are predicted
    fit_rows, held_out = rows[:anchors] + rows[anchors::2], rows[anchors + 1::2]
    fitted = fit_to_models(host, layers, fit_rows, glue, name="host-fitted", measurements_label=name,
                           sha256="0" * 64, outputs=outputs, converted=converted).profile
    plain = roofline_only(host)
    fitted_plain = fit_to_models(plain, layers, fit_rows, glue, name="host-roofline-fitted",
                                 measurements_label=name, sha256="0" * 64, outputs=outputs, converted=converted).profile
    measured = [r.latency_s * 1e3 for r in held_out]
    # the held-out policies timed a second time, last to first, minutes after the first: how well one timing
    # ranks the policies against another is the most any prediction can reach against one timing
    again = {id(r): timer(r.policy).median_ms for r in reversed(held_out)}
    measured_again = [again[id(r)] for r in held_out]
    result = {"model": name, "layers": len(layers), "cpu": host_name(), "policies": len(policies),
              "fit_rows": len(fit_rows), "held_out": len(held_out), "timing_s": seconds,
              "retimed_spearman": float(spearmanr(measured, measured_again).statistic),
              "retimed_median_relative_error": float(np.median([abs(a - m) / m for a, m in zip(measured_again,
                                                                                               measured)])),
              "spread_median": float(np.median([t.spread for t in timings])),
              # the factors HostTimer's drift correction applied (the fp32 model timed again every 20 s)
              "drift_range": [float(min(t.drift for t in timings)), float(max(t.drift for t in timings))],
              "fp32_ms": timings[0].median_ms, "w8a8_ms": timings[1].median_ms, "profiles": {},
              "fitted_values": {key: value for key, value in fitted.spec.to_dict().items()
                                if key in ("compute", "efficiency", "memory", "overhead", "conversion")}}
    for label, profile in (("host fitted", fitted), ("host fitted, roofline only", fitted_plain),
                           ("host as shipped", host), ("intel-vnni as shipped", load_profile("intel-vnni"))):
        predicted = []
        for r in held_out:   # a profile may not offer a policy of host's space (fp16 weights, int8 inputs)
            try:
                cost = model_cost(layers, r.policy, profile, glue=glue, outputs=outputs, converted=converted)
                predicted.append(cost.latency_s * 1e3)
            except QevoError:
                predicted.append(float("nan"))
        kept = [(p, m) for p, m in zip(predicted, measured) if p == p]
        errors = [abs(p - m) / m for p, m in kept]
        result["profiles"][label] = {"spearman": float(spearmanr(*zip(*kept)).statistic) if len(kept) > 2 else None,
                                     "median_relative_error": float(np.median(errors)) if errors else None,
                                     "predicted_ms": predicted, "offered": len(kept)}
    result["measured_ms"] = measured
    result["measured_again_ms"] = measured_again
    result["summaries"] = [r.policy.summary() for r in held_out]
    # every timed policy, so other fits can be tried on the same timings (kept beside, not in git)
    timed = json.loads(POINTS.read_text()) if POINTS.exists() else {}
    timed[name] = [{"policy": r.policy.to_dict(), "ms": r.latency_s * 1e3, "fit": i < anchors or (i - anchors) % 2 == 0}
                   for i, r in enumerate(rows)]
    POINTS.write_text(json.dumps(timed))
    return result


def roofline_only(host):
    """`host` without what the roofline cannot express (conversions, kernels limited to op kinds, int2 unpacked
    to int8): the profile as it was before those schema terms, to show what they buy."""
    from qevo_cli.profiles import profile_from_dict

    data = host.spec.to_dict()
    data.pop("conversion", None)
    removed = [key for key, entry in data["compute"].items() if "kinds" in entry]
    for key in removed:
        del data["compute"][key]
    data["fallback"]["weight"]["int2"] = "fp32"
    for source in data["sources"]:
        source["used_for"] = [k for k in source.get("used_for", [])
                              if k.split(".")[0] != "conversion"
                              and not any(k.startswith(f"compute.{r}") for r in removed)]
    data["name"] = "host-roofline"
    return profile_from_dict(data)


def plot(rows: list[dict]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(rows), figsize=(4.2 * len(rows), 4), squeeze=False)
    for ax, row in zip(axes[0], rows):
        values = list(row["measured_ms"])
        for label, marker in (("host fitted", "o"), ("intel-vnni as shipped", "x")):
            entry = row["profiles"][label]
            pairs = [(m, p) for m, p in zip(row["measured_ms"], entry["predicted_ms"]) if p == p]
            if not pairs:
                continue
            ax.scatter(*zip(*pairs), marker=marker, s=18, label=f"{label} (rho {entry['spearman'] or 0:.2f})")
            values += [p for _, p in pairs]
        low, high = min(values), max(values)
        ax.plot([low, high], [low, high], color="grey", lw=0.8)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_title(f"{row['model']} ({row['held_out']} held-out policies)")
        ax.set_xlabel("measured on this machine, ms")
        ax.set_ylabel("predicted, ms")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(DOCS / "host_latency.png", dpi=110)


def print_table(rows: list[dict]) -> None:
    labels = ("host fitted", "host fitted, roofline only", "host as shipped", "intel-vnni as shipped")
    print("| model (layers) | policies timed (s) | fp32 / W8A8 ms | spread | drift corrected | timed again: Spearman, "
          "median change | fitted host: Spearman, median error | fitted without conversions | host as shipped | "
          "intel-vnni as shipped |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        cells = [f"{e['spearman']:.2f}, {100 * e['median_relative_error']:.0f}%"
                 + (f" ({e['offered']} offered)" if e.get("offered", r["held_out"]) < r["held_out"] else "")
                 if e["spearman"] is not None else "-"
                 for e in (r["profiles"].get(k, {"spearman": None}) for k in labels)]
        low, high = r.get("drift_range", (1.0, 1.0))
        print(f"| {r['model']} ({r['layers']}) | {r['policies']} ({r['timing_s']:.0f}) | {r['fp32_ms']:.2f} / "
              f"{r['w8a8_ms']:.2f} | {100 * r['spread_median']:.1f}% | x{low:.2f} to x{high:.2f} | "
              f"{r['retimed_spearman']:.2f}, {100 * r['retimed_median_relative_error']:.0f}% | "
              + " | ".join(cells) + " |")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", default=["orientation", "ppocr-cls", "magika", "minilm", "ppocr-det",
                                                     "ppocr-rec"])
    parser.add_argument("--zoo", type=Path, default=ZOO_DIR)
    parser.add_argument("--policies", type=int, default=80)
    parser.add_argument("--table", action="store_true", help="print the table of the saved results")
    args = parser.parse_args(argv)
    if args.table:
        rows = json.loads(OUT.read_text())
    else:
        rows = measure_models(args.names, OUT, lambda name: measure(name, args.zoo, args.policies))
    print_table(rows)
    plot(rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
