"""`qevo inspect`: the quantizable layers of a model, their size and cost, and their sensitivity."""
from __future__ import annotations

from typing import Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
from rich.table import Table

from ..sensitivity import measure_sensitivity
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
        "--sensitivity", help="Measure each layer quantized alone at each format (cached on disk).")] = False,
    threads: ThreadsOpt = 1,
    json_output: JsonOpt = False,
) -> None:
    """List a model's quantizable layers: op, weight shape, parameters, MACs and share of model size."""
    workspace = open_workspace(model, data, calib, metric, parse_dims(dim), need_data=sensitivity)
    loaded = workspace.model
    total_params = loaded.weight_params + loaded.other_params
    report = {
        "model": str(loaded.path),
        "digest": loaded.digest,
        "inputs": [{"name": s.name, "dtype": str(s.dtype), "shape": list(s.shape)} for s in loaded.inputs],
        "outputs": loaded.output_names,
        "dims": loaded.dims,
        "layers": [{**layer.to_dict(), "size_share": layer.params / total_params if total_params else 0.0}
                   for layer in loaded.layers],
        "totals": {"layers": len(loaded.layers), "params": total_params, "quantizable_params": loaded.weight_params,
                   "macs": sum(layer.macs for layer in loaded.layers), "fp32_bytes": 4 * total_params},
        "notes": loaded.notes,
    }
    table = None
    if sensitivity:
        evaluator = workspace.evaluator(threads)
        with Progress(TextColumn("sensitivity"), BarColumn(), MofNCompleteColumn(), console=err,
                      transient=True, disable=json_output) as progress:
            task = progress.add_task("", total=None)
            table = measure_sensitivity(
                evaluator, progress=lambda done, total: progress.update(task, completed=done, total=total))
        report["sensitivity"] = {"metric": workspace.metric.name, "unit": workspace.metric.unit,
                                 "data": str(workspace.data.path), **table.to_dict(), "cached": table.from_cache}
    if json_output:
        print_json(report)
        return
    _render_layers(report)
    if table is not None:
        _render_sensitivity(report["sensitivity"])


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
    out.print(f"total {_count(totals['params'])} params ({_count(totals['quantizable_params'])} in quantizable "
              f"weights), {_count(totals['macs'])} MACs per inference, {totals['fp32_bytes'] / 1e6:.2f} MB at fp32")
    inputs = ", ".join(f"{s['name']} {s['dtype']} {s['shape']}" for s in report["inputs"])
    out.print(f"inputs: {inputs}")
    for note in report["notes"]:
        out.print(f"[dim]note: {note}[/]")


def _column_label(column: str) -> str:
    """'W:int4' -> 'W4', 'W:fp16' -> 'W16f', 'A:int8' -> 'A8'."""
    side, fmt = column.split(":")
    return side + (fmt[3:] if fmt.startswith("int") else fmt[2:] + "f")


def _render_sensitivity(sens: dict) -> None:
    unit = f" ({sens['unit']})" if sens["unit"] else ""
    table = Table(title=f"{sens['metric']} drop{unit} with one layer quantized, the rest fp32 "
                        f"(fp32 {sens['fp32_score']:.3f}{sens['unit']}){' [cached]' if sens['cached'] else ''}",
                  title_justify="left")
    table.add_column("layer", no_wrap=True)
    for column in sens["columns"]:
        table.add_column(_column_label(column), justify="right")
    for layer, row in sens["drops"].items():
        cells = []
        for column in sens["columns"]:
            value = row.get(column)
            if value is None:
                cells.append("-")
            else:
                style = "red" if value >= 1.0 else "yellow" if value > 0.2 else ""
                cells.append(f"[{style}]{value:+.2f}[/]" if style else f"{value:+.2f}")
        table.add_row(layer, *cells)
    out.print(table)
