"""`qevo pareto show` and `qevo export`: look at a front, choose from it, write the choice."""
from __future__ import annotations

import shutil
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table

from ..compare import best_across, compare_runs, save_comparison, shared_pairs
from ..errors import QevoError
from ..export import check_output, choose, write_choice
from ..layer_map import (DOUBTFUL_DB, SENSITIVE_DB, column_titles, layer_map, save_layer_map, sensitivity_style,
                         style, weight_sensitivity)
from ..pick import knee_id, pick
from ..plot import save_convergence, save_png, terminal_plot
from ..runs import NO_CONVERGENCE, convergence_steps, load_convergence, load_front, load_sensitivity
from ..units import human, metric_label, metric_value
from .common import check_png, handle_errors, out, print_json

app = typer.Typer(help="Look at a search's Pareto front and choose from it.", no_args_is_help=True)

RunArg = Annotated[Optional[Path], typer.Argument(
    help="Run directory. Default: the most recent run under ./qevo-runs.", show_default=False)]
PickOpt = Annotated[Optional[str], typer.Option(
    "--pick", help="knee, weights=ACC,SIZE,LAT,ENERGY, an id, or a rule such as max-drop=1.0,min=latency.")]


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
        "--layers", help="Also show which layer got which format: one row per layer, one column per policy, "
                         "beside each layer's sensitivity (pt per-tensor, g64 per-group-64, asym, pct/mse/ent "
                         "calibration, sq0.5 smoothing, g gptq, b bias correction, o output-mse range, m mse range, "
                         "s N:M sparse, -25% channels pruned).")
    ] = False,
    layers_png: Annotated[Optional[Path], typer.Option(
        "--layers-png", help="Write the layer map as a PNG heatmap: layers down, policies across, coloured by "
                             "weight bits.")] = None,
    convergence: Annotated[bool, typer.Option(
        "--convergence", help="Also show how the search converged: hypervolume, front size and evaluations after "
                              "each generation (and each resume).")] = False,
    convergence_png: Annotated[Optional[Path], typer.Option(
        "--convergence-png", help="Write the convergence as a PNG: hypervolume and front size against "
                                  "evaluations and against time.")] = None,
    json_output: Annotated[bool, typer.Option("--json", help="Print JSON to stdout and nothing else.")] = False,
) -> None:
    """Show a run's Pareto front in human units, with the references and the knee marked."""
    for option, value in (("--plot", plot), ("--layers-png", layers_png), ("--convergence-png", convergence_png)):
        check_png(value, option)
    directory, front = load_front(run_dir)
    objectives = front.objectives
    if sort is not None and sort not in objectives:
        raise QevoError(f"got {sort!r}, expected one of the run's objectives {', '.join(objectives)}", field="--sort")
    solutions = list(front.solutions)
    key = sort or objectives[0]
    solutions.sort(key=lambda s: ([s.objectives[key]] + [s.objectives[n] for n in objectives], s.id))
    if limit:
        solutions = solutions[:limit]
    knee = knee_id(front)
    picked = pick(front, pick_rule).id if pick_rule else None
    sensitivity = weight_sensitivity(load_sensitivity(directory)) if layers or layers_png else None
    shown = front.references + solutions
    grid = layer_map(front.model, shown) if layers or layers_png else {}   # loads the model: once
    history = load_convergence(directory) if convergence or convergence_png else []
    if convergence_png is not None:
        if not history:
            raise QevoError(f"records no convergence ({NO_CONVERGENCE})", path=directory, field="--convergence-png")
        save_convergence(history, convergence_png, f"{Path(front.model).name} on {front.target}: convergence")
    if plot is not None:
        save_png(front, plot, knee_id=knee)
    if layers_png is not None:
        save_layer_map(grid, column_titles(front, shown), layers_png,
                       f"{Path(front.model).name} on {front.target}: weight formats per layer "
                       f"(columns: policy, {metric_label(front)} drop)", sensitivity)
    if json_output:
        print_json({"run_dir": str(directory), "target": front.target, "metric": front.metric,
                    "objectives": objectives, "knee": knee, "picked": picked, "plot": str(plot) if plot else None,
                    "references": [r.to_dict() for r in front.references], "flat": front.flat_objectives(),
                    "solutions": [{**s.to_dict(), "bits": s.policy.summary()} for s in solutions],
                    **({"layers": grid,
                        "sensitivity": {"label": sensitivity[0], "values": sensitivity[1]} if sensitivity else None}
                       if layers else {}),
                    **({"convergence": history} if convergence else {})})
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
        _print_layer_map(grid, shown, sensitivity)
    if convergence:
        _print_convergence(history)
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
    if convergence_png is not None:
        out.print(f"convergence written to {convergence_png}")


def _print_convergence(rows: list[dict]) -> None:
    if not rows:
        out.print(f"this run records no convergence ({NO_CONVERGENCE})", style="yellow")
        return
    table = Table(title="convergence: the front after each generation", title_justify="left")
    for name in ("step", "evaluations", "front size", "hypervolume", "time"):
        table.add_column(name, justify="left" if name == "step" else "right")
    for step, row in convergence_steps(rows):
        table.add_row(step, str(row["evaluations"]), str(row["front_size"]), f"{row['hypervolume']:.6f}",
                      f"{row['elapsed_s']:.1f} s")
    out.print(table)


def _print_layer_map(grid: dict[str, dict[str, str]], shown: list, sensitivity) -> None:
    table = Table(title=f"which layer got which format ({len(grid)} layers)", title_justify="left")
    table.add_column("layer")
    if sensitivity:
        table.add_column(sensitivity[0], justify="right")
    for s in shown:
        table.add_column(str(s.id) if s.id is not None else s.name, justify="left")
    for layer, cells in grid.items():
        db = sensitivity[1].get(layer) if sensitivity else None
        lead = [] if not sensitivity else ["-"] if db is None else [f"[{sensitivity_style(db)}]{db:.1f}[/]"
                                                                     if sensitivity_style(db) else f"{db:.1f}"]
        table.add_row(layer, *lead, *[f"[{style(text)}]{text}[/]" for text in cells.values()])
    out.print(table)
    if sensitivity:
        out.print(f"[dim]{sensitivity[0]}: the model's output SQNR with only that layer's weights at that format "
                  f"(the search's sensitivity proxy); red below {SENSITIVE_DB:g} dB, yellow below {DOUBTFUL_DB:g}[/]")


@app.command("compare")
@handle_errors
def compare(
    run_dirs: Annotated[list[Path], typer.Argument(
        help="Two or more run directories: one model on several targets, or one target with several settings.",
        show_default=False)],
    pick_rule: Annotated[str, typer.Option(
        "--pick", help="The rule that picks one policy on each run: knee, weights=..., or a rule such as "
                       "max-drop=1.0,min=latency (then the run whose pick is least in that objective is named).")
    ] = "knee",
    png: Annotated[Optional[Path], typer.Option(
        "--png", help="Write one figure: every run's front on shared axes, its pick starred.")] = None,
    json_output: Annotated[bool, typer.Option("--json", help="Print JSON to stdout and nothing else.")] = False,
) -> None:
    """Put several runs side by side: their fronts, and the policy a rule picks on each."""
    check_png(png, "--png")
    runs = compare_runs(run_dirs, pick_rule)
    best = best_across(runs, pick_rule)
    notes = shared_pairs(runs)[1]
    if png is not None:
        save_comparison(runs, png, pick_rule)
    if json_output:
        print_json({"pick": pick_rule, "runs": [run.to_dict() for run in runs], "notes": notes,
                    "best": None if best is None else {"objective": best[0], "run": best[1].label,
                                                       "id": best[1].chosen.id},
                    "png": str(png) if png else None})
        return
    objectives = [name for name in ("metric", "size", "latency", "energy")
                  if any(name in run.front.objectives for run in runs)]
    table = Table(title=f"{len(runs)} runs, the policy `{pick_rule}` picks on each", title_justify="left")
    for name in ("run", "model", "target", "front", "hypervolume", "pick"):
        table.add_column(name, justify="right" if name in ("front", "hypervolume", "pick") else "left")
    for name in objectives:
        table.add_column("drop" if name == "metric" else name, justify="right")
    table.add_column("bits")
    for run in runs:
        front, chosen = run.front, run.chosen
        unit = front.metric_unit
        size = f"{len(front.solutions)} of {front.evaluated}" if front.feasible else \
            f"[yellow]none within budget ({front.evaluated} evaluated)[/]"
        head = [run.label, Path(front.model).name, front.target, size, f"{front.hypervolume:.4f}"]
        if chosen is None:
            table.add_row(*head, "[yellow]none[/]", *["" for _ in objectives], f"[yellow]{run.refusal}[/]")
            continue
        values = [human(name, chosen.objectives[name], unit) if name in chosen.objectives else "-"
                  for name in objectives]
        marked = best is not None and run is best[1]
        table.add_row(*head, f"#{chosen.id}", *[f"[bold]{v}[/]" if marked else v for v in values],
                      chosen.policy.summary())
    out.print(table)
    out.print("[dim]hypervolume: each run's own, normalised to its own fp32 costs: comparable between runs of one "
              "model, target and objectives, not across targets[/]")
    if best is not None:
        objective, run = best
        out.print(f"least {objective} under {pick_rule}: {run.label} ({run.front.target}), policy #{run.chosen.id} at "
                  f"{human(objective, run.chosen.objectives[objective], run.front.metric_unit)}")
    for note in notes:
        out.print(note, style="yellow")
    if png is not None:
        out.print(f"comparison written to {png}")


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
