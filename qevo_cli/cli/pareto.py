"""`qevo pareto show` and `qevo export`: look at a front, choose from it, write the choice."""
from __future__ import annotations

import shutil
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table

from ..errors import QevoError
from ..export import check_output, choose, write_choice
from ..front import Front
from ..layer_map import layer_map, save_layer_map, style
from ..pick import pick
from ..plot import save_png, terminal_plot
from ..runs import load_front
from ..units import human, metric_label, metric_value
from .common import handle_errors, out, print_json

app = typer.Typer(help="Look at a search's Pareto front and choose from it.", no_args_is_help=True)

RunArg = Annotated[Optional[Path], typer.Argument(
    help="Run directory. Default: the most recent run under ./qevo-runs.", show_default=False)]
PickOpt = Annotated[Optional[str], typer.Option(
    "--pick", help="knee, weights=ACC,SIZE,LAT,ENERGY, an id, or a rule such as max-drop=1.0,min=latency.")]


def _knee_id(front: Front) -> int | None:
    return pick(front, "knee").id if front.feasible and front.solutions else None


@app.command("show")
@handle_errors
def show(
    run_dir: RunArg = None,
    sort: Annotated[Optional[str], typer.Option("--sort", help="Sort by this objective.")] = None,
    limit: Annotated[Optional[int], typer.Option("--limit", min=1, help="Show at most this many policies.")] = None,
    pick_rule: PickOpt = None,
    plot: Annotated[Optional[Path], typer.Option(
        "--plot", help="Write a PNG: the front against the references, one panel per pair of objectives.")] = None,
    layers: Annotated[bool, typer.Option(
        "--layers", help="Also show which layer got which format: one row per layer, one column per policy "
                         "(g gptq, b bias correction, o output-mse range, s N:M sparse, -25% channels pruned).")
    ] = False,
    layers_png: Annotated[Optional[Path], typer.Option(
        "--layers-png", help="Write the layer map as a PNG heatmap: layers down, policies across, coloured by "
                             "weight bits.")] = None,
    json_output: Annotated[bool, typer.Option("--json", help="Print JSON to stdout and nothing else.")] = False,
) -> None:
    """Show a run's Pareto front in human units, with the references and the knee marked."""
    for option, value in (("--plot", plot), ("--layers-png", layers_png)):
        if value is not None and value.suffix.lower() != ".png":
            raise QevoError(f"got {value.suffix or 'no suffix'}, expected a .png file", path=value, field=option)
    directory, front = load_front(run_dir)
    objectives = front.objectives
    if sort is not None and sort not in objectives:
        raise QevoError(f"got {sort!r}, expected one of the run's objectives {', '.join(objectives)}", field="--sort")
    solutions = list(front.solutions)
    key = sort or objectives[0]
    solutions.sort(key=lambda s: ([s.objectives[key]] + [s.objectives[n] for n in objectives], s.id))
    if limit:
        solutions = solutions[:limit]
    knee = _knee_id(front)
    picked = pick(front, pick_rule).id if pick_rule else None
    if plot is not None:
        save_png(front, plot, knee_id=knee)
    if layers_png is not None:
        shown = front.references + solutions
        unit = front.metric_unit
        save_layer_map(layer_map(front.model, shown),
                       [s.name if s.id is None else f"#{s.id} ({human('metric', s.objectives['metric'], unit)})"
                        for s in shown], layers_png,
                       f"{Path(front.model).name} on {front.target}: weight formats per layer "
                       f"(columns: policy, {metric_label(front)} drop)")
    if json_output:
        print_json({"run_dir": str(directory), "target": front.target, "metric": front.metric,
                    "objectives": objectives, "knee": knee, "picked": picked, "plot": str(plot) if plot else None,
                    "references": [r.to_dict() for r in front.references], "flat": front.flat_objectives(),
                    "solutions": [{**s.to_dict(), "bits": s.policy.summary()} for s in solutions],
                    **({"layers": layer_map(front.model, front.references + solutions)} if layers else {})})
        return
    unit = front.metric_unit
    table = Table(title=f"{Path(front.model).name} on {front.target}: {len(front.solutions)} policies "
                        f"({metric_label(front)}, fp32 {metric_value(front.fp32_metric, unit)})",
                  title_justify="left")
    table.add_column("id", justify="right")
    for name in objectives:
        table.add_column(f"{metric_label(front)} drop" if name == "metric" else name, justify="right")
    table.add_column("bits")
    table.add_column("")
    for reference in front.references:
        table.add_row(f"[dim]{reference.name}[/]", *[f"[dim]{human(n, reference.objectives[n], unit)}[/]"
                                                     for n in objectives],
                      f"[dim]{reference.policy.summary()}[/]", "[dim]reference[/]")
    for solution in solutions:
        marks = " ".join(m for m, on in (("knee", solution.id == knee), ("picked", solution.id == picked)) if on)
        style = "bold" if marks else ""
        cells = [str(solution.id), *[human(n, solution.objectives[n], unit) for n in objectives],
                 solution.policy.summary(), marks]
        table.add_row(*[f"[{style}]{c}[/]" if style and c else c for c in cells])
    out.print(table)
    if layers:
        _print_layer_map(front, solutions)
    if len(objectives) >= 2 and front.solutions and shutil.get_terminal_size((80, 24)).columns >= 60:
        x_name = "size" if "size" in objectives and objectives[0] == "metric" else objectives[1]
        for line in terminal_plot(front, x_name, objectives[0], width=min(60, out.width - 25), knee_id=knee):
            out.print(line, highlight=False, markup=False)
        out.print("* policy   K knee   F fp32   W uniform W8A8", style="dim")
    for name, span in front.flat_objectives().items():
        values = front.values(name)
        out.print(f"{name} does not separate these policies on this target: they span {100 * span:.2g}% "
                  f"({human(name, min(values), unit)} to {human(name, max(values), unit)})", style="yellow")
    if plot is not None:
        out.print(f"plot written to {plot}")
    if layers_png is not None:
        out.print(f"layer map written to {layers_png}")


def _print_layer_map(front: Front, solutions: list) -> None:
    shown = front.references + solutions
    grid = layer_map(front.model, shown)
    table = Table(title=f"which layer got which format ({len(grid)} layers)", title_justify="left")
    table.add_column("layer")
    for s in shown:
        table.add_column(str(s.id) if s.id is not None else s.name, justify="left")
    for layer, cells in grid.items():
        table.add_row(layer, *[f"[{style(text)}]{text}[/]" for text in cells.values()])
    out.print(table)


EXIT_MISMATCH = 4


@handle_errors
def export(
    paths: Annotated[list[Path], typer.Argument(
        help="[RUN_DIR] OUTPUT: the run (default: the most recent under ./qevo-runs) and the file to write: "
             ".yaml or .json (the chosen policy with its objectives, model and target) or .onnx (a quantized "
             "QDQ model, loaded and measured again).", show_default=False)],
    pick_rule: Annotated[str, typer.Option(
        "--pick", help="knee, weights=ACC,SIZE,LAT,ENERGY, an id, or a rule such as max-drop=1.0,min=latency.")
    ] = "knee",
    allow_simulated: Annotated[bool, typer.Option(
        "--allow-simulated", help="For .onnx: write formats no ONNX type stores (3, 5, 6, 7 bits) as weights "
                                  "rounded to their levels in float.")] = False,
    tolerance: Annotated[float, typer.Option(
        "--tolerance", min=0.0, help="For .onnx: largest allowed difference between the search's metric and the "
                                     "exported model's, in percent of the fp32 metric (0.5: half a percent of it); "
                                     "beyond it, exit 4.")] = 0.5,
    verbose: Annotated[bool, typer.Option("--verbose", help="Show onnxruntime's own warnings and errors.")] = False,
    json_output: Annotated[bool, typer.Option("--json", help="Print JSON to stdout and nothing else.")] = False,
) -> None:
    """Write one policy from a run's front: as a policy file, or as a quantized ONNX model measured again."""
    if len(paths) not in (1, 2):
        raise QevoError("expected [RUN_DIR] OUTPUT", field="paths")
    run_dir, output = (paths[0], paths[1]) if len(paths) == 2 else (None, paths[0])
    output = check_output(output)
    if output.suffix == ".onnx":
        from ..evaluate import verbose_runtime

        verbose_runtime(verbose)
    directory, front, solution = choose(run_dir, pick_rule)
    result = write_choice(directory, front, solution, pick_rule, output, allow_simulated, tolerance)
    unit = front.metric_unit
    if json_output:
        print_json(result)
    else:
        values = ", ".join(f"{name} {human(name, solution.objectives[name], unit)}" for name in front.objectives)
        out.print(f"wrote policy #{solution.id} ({pick_rule}: {values}) to {output}")
        if "measured_metric" in result:
            size = human("size", result["file_bytes"] / 1e6)
            out.print(f"{metric_label(front)}: search {metric_value(solution.metric, unit)}, exported model "
                      f"({size}, opset {result['opset']}) measured {metric_value(result['measured_metric'], unit)} "
                      f"(difference {human('metric', result['difference'], unit) if result['difference'] else 0}, "
                      f"tolerance {tolerance}% of fp32)")
    if "within_tolerance" in result and not result["within_tolerance"]:
        typer.echo(f"error: {output}: the exported model measures {metric_value(result['measured_metric'], unit)}, "
                   f"the search said {metric_value(solution.metric, unit)}: more than --tolerance {tolerance}% of "
                   "the fp32 metric apart", err=True)
        raise typer.Exit(EXIT_MISMATCH)
