"""`qevo inspect`: the quantizable layers of a model, their size and cost, and their sensitivity."""
from __future__ import annotations

from typing import Annotated, Optional

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
from rich.table import Table

from ..cost import model_cost
from ..errors import QevoError
from ..model import LoadedModel
from ..policy import FP32, LayerChoice
from ..profiles import load_profile, uniform_policy
from ..proxy import ProbeStore, measure_proxy
from ..scope import activation_groups
from ..genome import Allowed, build_space
from ..pruning import channel_groups
from ..structure import MIN_CHANNELS, prune_groups
from ..sensitivity import RECOVERED_FORMATS, measure_sensitivity, proxy_summary
from ..store import EvaluationCache
from ..metrics import short_name
from ..units import human, metric_value
from ..workspace import open_workspace, parse_dims
from .common import err, handle_errors, out, print_json
from .options import CalibOpt, DataOpt, DimOpt, JsonOpt, MetricOpt, ModelArg, ThreadsOpt


def _count(n: int) -> str:
    for unit, size in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if n >= size:
            return f"{n / size:.2f}{unit}"
    return str(n)


@handle_errors
def inspect(
    model: ModelArg = None,
    data: DataOpt = None,
    calib: CalibOpt = None,
    metric: MetricOpt = None,
    dim: DimOpt = None,
    sensitivity: Annotated[bool, typer.Option(
        "--sensitivity", help="Each layer's sensitivity at each format: the proxy (a few probes on a data subset, "
                              "as the search uses it), or with --full the metric drop measured on all the data.")] = False,
    full: Annotated[bool, typer.Option(
        "--full", help="With --sensitivity: one full pass per layer and format (slow on large models; cached).")] = False,
    recovery: Annotated[bool, typer.Option(
        "--recovery", help="With --sensitivity: also int2, int3 and int4 weights recovered (gptq rounding, the "
                           "output-mse range and bias correction, where each applies): columns W2+r, W3+r, W4+r.")
    ] = False,
    target: Annotated[Optional[str], typer.Option(
        "--target", help="Hardware profile (built-in name or YAML file): per-layer latency, energy and size "
                         "at fp32, W8A8 and W4A8, and whether each layer is compute- or memory-bound.")] = None,
    prune: Annotated[bool, typer.Option(
        "--prune", help="The model's channel groups: the Convs whose output channels prune together (tied by "
                        "residuals), the layers that read them, and why a group cannot be pruned.")] = False,
    threads: ThreadsOpt = 1,
    json_output: JsonOpt = False,
) -> None:
    """List a model's quantizable layers: op, weight shape, parameters, MACs and share of model size."""
    profile = load_profile(target) if target else None
    workspace = open_workspace(model, data, calib, metric, parse_dims(dim), need_data=sensitivity)
    loaded = workspace.model
    total_params = loaded.weight_params
    holders = loaded.holders()
    out_of_reach = [h for h in holders if h.layer is None]
    report = {
        "model": str(loaded.path),
        "digest": loaded.digest,
        "inputs": [{"name": s.name, "dtype": str(s.dtype), "shape": list(s.shape)} for s in loaded.inputs],
        "outputs": loaded.output_names,
        "dims": loaded.dims,
        "layers": [{**layer.to_dict(), "size_share": layer.params / total_params if total_params else 0.0}
                   for layer in loaded.layers],
        "weights": [h.to_dict() for h in holders],
        "totals": {"layers": len(loaded.layers), "quantizable_params": loaded.weight_params,
                   "macs": sum(layer.macs for layer in loaded.layers), "file_bytes": loaded.file_bytes,
                   "quantizable_share": loaded.quantizable_share, "weights": len(holders),
                   "weights_out_of_reach": len(out_of_reach),
                   "out_of_reach_share": sum(h.bytes for h in out_of_reach) / max(loaded.file_bytes, 1)},
        "notes": loaded.notes,
    }
    if profile is not None:
        report["target"] = _target_costs(loaded, profile)
    if prune:
        report["channel_groups"] = channel_group_report(loaded)
    if full and not sensitivity:
        raise QevoError("--full goes with --sensitivity", field="--full")
    if recovery and not sensitivity:
        raise QevoError("--recovery goes with --sensitivity", field="--recovery")
    recovered = RECOVERED_FORMATS if recovery else ()
    table = None
    if sensitivity:
        evaluator = workspace.evaluator(threads)
        with Progress(TextColumn("sensitivity"), BarColumn(), MofNCompleteColumn(), console=err,
                      transient=True, disable=json_output) as progress:
            task = progress.add_task("", total=None)
            tick = lambda done, total: progress.update(task, completed=done, total=total)  # noqa: E731
            if full:
                table = measure_sensitivity(evaluator, progress=tick, recovered_formats=recovered)
                report["sensitivity"] = {"kind": "full", "metric": workspace.metric.name,
                                         "unit": workspace.metric.unit, "data": str(workspace.data.path),
                                         "display_unit": workspace.metric.display_unit(table.fp32_score),
                                         **table.to_dict(), "cached": table.from_cache}
            else:
                report["sensitivity"] = _proxy_report(evaluator, workspace, tick, recovered)
                table = report["sensitivity"]
    if json_output:
        print_json(report)
        return
    _render_layers(report)
    if prune:
        _render_groups(report["channel_groups"])
    if profile is not None:
        _render_target(report["target"])
    if table is not None:
        (_render_sensitivity if full else _render_proxy)(report["sensitivity"])


def _render_layers(report: dict) -> None:
    table = Table(title=f"{report['model']}: {report['totals']['layers']} quantizable layers", title_justify="left")
    for column, justify in (("#", "right"), ("layer", "left"), ("op", "left"), ("kind", "left"),
                            ("weight shape", "left"), ("params", "right"), ("MACs", "right"), ("size", "right")):
        table.add_column(column, justify=justify)
    for i, layer in enumerate(report["layers"]):
        where = f" [dim](in {layer['subgraph'].rstrip('/')})[/]" if layer["subgraph"] else ""
        table.add_row(str(i), layer["name"] + where, layer["op_type"], layer["kind"],
                      "x".join(map(str, layer["weight_shape"])) or "-", _count(layer["params"]),
                      _count(layer["macs"]), f"{100 * layer['size_share']:.1f}%")
    out.print(table)
    totals = report["totals"]
    out.print(f"{_count(totals['quantizable_params'])} params in quantizable weights "
              f"({100 * totals['quantizable_share']:.1f}% of the file's {totals['file_bytes'] / 1e6:.2f} MB), "
              f"{_count(totals['macs'])} MACs per inference")
    missed = [w for w in report["weights"] if w["layer"] is None]
    if missed:
        table = Table(title=f"{len(missed)} of {totals['weights']} constant weights qevo cannot quantize: "
                            f"{100 * totals['out_of_reach_share']:.1f}% of the file", title_justify="left")
        for column, justify in (("weight", "left"), ("read by", "left"), ("size", "right"), ("why", "left")):
            table.add_column(column, justify=justify)
        for weight in sorted(missed, key=lambda w: -w["bytes"])[:20]:
            table.add_row(weight["tensor"], ", ".join(weight["op_types"]), human("size", weight["bytes"] / 1e6),
                          weight["why"])
        out.print(table)
        if len(missed) > 20:
            out.print(f"[dim]... and {len(missed) - 20} more (--json lists them all)[/]")
    else:
        out.print(f"every one of the {totals['weights']} constant weights is quantizable")
    inputs = ", ".join(f"{s['name']} {s['dtype']} {s['shape']}" for s in report["inputs"])
    out.print(f"inputs: {inputs}")
    for note in report["notes"]:
        out.print(f"[dim]note: {note}[/]")


def channel_group_report(loaded: LoadedModel) -> list[dict]:
    """Every channel group of the top graph, with whether the search may prune it (structure.py)."""
    groups = channel_groups(loaded.proto)
    offered = {group.index: group for group in prune_groups(loaded, groups)}
    rows = []
    for index, group in enumerate(groups):
        why = group.why if not group.prunable else "" if index in offered else \
            f"fewer than {MIN_CHANNELS} channels" if group.channels < MIN_CHANNELS else \
            "a Conv, Gemm or MatMul it touches is not a quantizable layer"
        rows.append({"producers": list(group.producers), "channels": group.channels,
                     "readers": [name for name, _ in group.readers],
                     "carriers": [f"{name} ({kind})" for name, kind in group.carriers],
                     "prunable": index in offered, "why_not": why})
    return rows


def _render_groups(rows: list[dict]) -> None:
    offered = sum(row["prunable"] for row in rows)
    table = Table(title=f"{len(rows)} channel groups, {offered} prunable (--prune offers them to the search)",
                  title_justify="left")
    for column, justify in (("producers", "left"), ("channels", "right"), ("read by", "left"), ("prunable", "left")):
        table.add_column(column, justify=justify)
    for row in rows:
        table.add_row(", ".join(row["producers"]), str(row["channels"]), ", ".join(row["readers"]) or "-",
                      "yes" if row["prunable"] else f"no: {row['why_not']}")
    out.print(table)


COSTED = {"fp32": FP32, "W8A8": LayerChoice(weight="int8", activation="int8"),
          "W4A8": LayerChoice(weight="int4", activation="int8")}


def _target_costs(loaded: LoadedModel, profile) -> dict:
    """Per-layer and total cost at fp32, uniform W8A8 and W4A8 (layers the target cannot run
    at a format keep W8A8, or fp32, and are listed)."""
    groups = activation_groups(loaded, profile.activation_scope)
    report = {"name": profile.name, "chip": profile.chip, "activation_scope": profile.activation_scope,
              "activation_tensors": [group.to_dict() for group in groups], "policies": {}}
    # on a target that quantizes more than layer inputs, the quantized policies hold every such tensor at their
    # activation format
    space = build_space(loaded.layers, profile, Allowed(), groups if profile.activation_scope != "layer-inputs" else ())
    for label, choice in COSTED.items():
        policy, behind = uniform_policy(profile, loaded.layers, choice)
        if choice != FP32:
            policy = space.with_tensors_at(policy, choice.activation)
        cost = model_cost(loaded.layers, policy, profile, other_bytes=loaded.other_bytes, glue=space.tensors.traffic,
                          outputs=space.tensors.outputs, converted=space.tensors.converted)
        report["policies"][label] = {
            "latency_s": cost.latency_s, "energy_j": cost.energy_j, "size_bytes": cost.weight_bytes,
            "not_offered": behind,
            "layers": [{"name": c.layer, "choice": policy.choice(c.layer).short(), "latency_s": c.latency_s,
                        "energy_j": c.energy_j, "weight_bytes": c.weight_bytes, "bound": c.bound}
                       for c in cost.layers]}
    return report


def _render_target(target: dict) -> None:
    policies = target["policies"]
    labels = list(policies)
    table = Table(title=f"cost on {target['name']} ({target['chip']}), per inference", title_justify="left")
    table.add_column("layer", no_wrap=True)
    for unit in ("us", "uJ"):
        for label in labels:
            table.add_column(f"{label} {unit}", justify="right")
    table.add_column("bound", justify="left")
    for i, layer in enumerate(policies["fp32"]["layers"]):
        rows = [policies[label]["layers"][i] for label in labels]
        marks = ["*" if layer["name"] in policies[label]["not_offered"] else "" for label in labels]
        table.add_row(layer["name"], *[f"{r['latency_s'] * 1e6:.2f}{m}" for r, m in zip(rows, marks)],
                      *[f"{r['energy_j'] * 1e6:.3f}" for r in rows], " ".join(r["bound"][0].upper() for r in rows))
    table.add_row("[bold]model[/]", *[f"[bold]{policies[label]['latency_s'] * 1e6:.2f}[/]" for label in labels],
                  *[f"[bold]{policies[label]['energy_j'] * 1e6:.3f}[/]" for label in labels], "")
    out.print(table)
    sizes = ", ".join(f"{label} {policies[label]['size_bytes'] / 1e3:.1f} kB" for label in labels)
    out.print(f"model size: {sizes}. bound: C compute, M memory (fp32, W8A8, W4A8); the model total includes "
              "the per-graph overhead")
    if any(policy["not_offered"] for policy in policies.values()):
        out.print("[dim]* the target does not offer that format for this layer; costed at W8A8 (or fp32)[/]")
    scope = {"layer-inputs": "the inputs of weight layers", "all-tensors": "every float tensor of the graph",
             "qdq-ops": "the inputs and outputs of the ops onnxruntime's static quantizer covers"}
    named = " (a policy's `tensors` key sets their formats)" if target["activation_scope"] != "layer-inputs" else ""
    out.print(f"{target['name']} quantizes {scope[target['activation_scope']]}: "
              f"{len(target['activation_tensors'])} activation tensors{named}")


def _column_label(column: str) -> str:
    """'W:int4' -> 'W4', 'W:int4+r' -> 'W4+r' (recovered), 'W:fp16' -> 'W16f', 'A:int8' -> 'A8'."""
    side, fmt = column.split(":")
    recovered = fmt.endswith("+r")
    fmt = fmt.removesuffix("+r")
    return side + (fmt[3:] if fmt.startswith("int") else fmt[2:] + "f") + ("+r" if recovered else "")


PROXY_COLUMNS = ("W:int2", "W:int3", "W:int4", "W:int6", "W:int8", "W:fp16", "A:int8", "A:int16", "A:fp16")


def _proxy_report(evaluator, workspace, tick, recovered=()) -> dict:
    store = EvaluationCache.for_evaluator(evaluator)
    try:
        proxy = measure_proxy(evaluator, ("int2", "int4", "int8"), ("int8",), store=ProbeStore(store), progress=tick)
    finally:
        store.close()
    names = [c for column in PROXY_COLUMNS
             for c in ([column, column + "+r"] if column[2:] in recovered else [column])]
    summary = proxy_summary(proxy, evaluator.model.layers, names)
    return {"kind": "proxy", "data": str(workspace.data.path), "subset": proxy.subset, "probes": proxy.probes,
            "unit": "dB", "columns": names, "sqnr_db": summary["sqnr_db"], "measured": proxy.measured}


def _render_proxy(sens: dict) -> None:
    def cell(layer: str, column: str, value: float) -> tuple[str, str]:
        text = (f"{value:.1f}" if value < 100 else "100") + ("" if column in sens["measured"].get(layer, {}) else "*")
        return text, "red" if value < 20 else "yellow" if value < 30 else ""

    _render_layer_grid(f"model output SQNR (dB) with one layer quantized, the rest fp32: probed on "
                       f"{sens['subset']} samples of {sens['data']}, other formats predicted "
                       "(lower is more sensitive; qevo inspect --sensitivity --full measures the metric)",
                       sens["columns"], sens["sqnr_db"], cell)
    out.print("[dim]* predicted from the probes and the format's quantization noise; others measured[/]")


def _render_sensitivity(sens: dict) -> None:
    display = sens["display_unit"]
    scale = abs(sens["fp32_score"]) or 1.0   # colours at 1% and 0.2% of the fp32 metric, whatever its scale

    def cell(layer: str, column: str, value: float) -> tuple[str, str]:
        return human("metric", value, display), "red" if value >= 0.01 * scale else \
            "yellow" if value > 0.002 * scale else ""

    _render_layer_grid(f"{short_name(sens['metric'])} drop with one layer quantized, the rest fp32 "
                       f"(fp32 {metric_value(sens['fp32_score'], display)}){' [cached]' if sens['cached'] else ''}",
                       sens["columns"], sens["drops"], cell)


def _render_layer_grid(title: str, columns: list[str], rows: dict[str, dict[str, float]], cell) -> None:
    """A layers x format-columns table; `cell(layer, column, value)` gives each cell's text and style."""
    table = Table(title=title, title_justify="left")
    table.add_column("layer", no_wrap=True)
    for column in columns:
        table.add_column(_column_label(column), justify="right")
    for layer, row in rows.items():
        cells = []
        for column in columns:
            if row.get(column) is None:
                cells.append("-")
                continue
            text, style = cell(layer, column, row[column])
            cells.append(f"[{style}]{text}[/]" if style else text)
        table.add_row(layer, *cells)
    out.print(table)
