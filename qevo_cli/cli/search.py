"""`qevo search`: the Pareto front of per-layer policies for a model on a target."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from ..config import SearchConfig
from ..resume import prepare_resume
from ..search import Search, SearchResult
from ..units import human, metric_label, metric_value
from ..workspace import parse_dims
from .common import err, handle_errors, out, print_json
from .options import CalibOpt, DataOpt, DimOpt, JsonOpt, MetricOpt, ModelArg, ThreadsOpt

EXIT_INFEASIBLE = 3
EXIT_INTERRUPTED = 130

# CLI option name -> SearchConfig field, for flags that map one to one.
FIELDS = {
    "model": "model", "data": "data", "calib": "calib", "metric": "metric", "target": "target",
    "objectives": "objectives", "max_drop": "max_drop", "max_size_mb": "max_size_mb",
    "max_latency_ms": "max_latency_ms", "max_energy_mj": "max_energy_mj", "weight_formats": "weight_formats",
    "act_formats": "act_formats", "granularity": "granularity", "calibration": "calibration", "rounding": "rounding",
    "bias_correction": "bias_correction", "weight_range": "weight_range", "smoothing": "smoothing",
    "sparsity": "sparsity", "prune": "prune",
    "algorithm": "algorithm", "pop": "pop", "generations": "generations", "evaluations": "evaluations",
    "time_limit": "time_limit", "seed": "seed", "workers": "workers", "dask": "dask", "out": "out",
    "threads": "threads", "racing": "racing", "recover_front": "recover_front", "latency_cmd": "latency_cmd",
    "latency_timeout": "latency_timeout",
}


@handle_errors
def search(
    ctx: typer.Context,
    model: ModelArg = None,
    target: Annotated[Optional[str], typer.Option(
        "--target", help="Hardware profile, required (here or in --config): a built-in name (qevo profiles list) "
                         "or a YAML file.")] = None,
    data: DataOpt = None,
    calib: CalibOpt = None,
    metric: MetricOpt = None,
    dim: DimOpt = None,
    objectives: Annotated[str, typer.Option(
        "--objectives", help="Objectives to minimise, comma-separated from metric, size, latency, energy. "
                             "Four objectives use NSGA-III.")] = "metric,size,latency",
    max_drop: Annotated[Optional[float], typer.Option(
        "--max-drop", help="Budget: largest metric drop from fp32 (points, or dB for sqnr).")] = None,
    max_size_mb: Annotated[Optional[float], typer.Option("--max-size-mb", help="Budget: model size in MB.")] = None,
    max_latency_ms: Annotated[Optional[float], typer.Option(
        "--max-latency-ms", help="Budget: latency per inference on the target, ms.")] = None,
    max_energy_mj: Annotated[Optional[float], typer.Option(
        "--max-energy-mj", help="Budget: energy per inference on the target, mJ.")] = None,
    weight_formats: Annotated[str, typer.Option(
        "--weight-formats", help="Weight formats to choose from: fp32, fp16, int2 ... int8.")] = "int2,int4,int8,fp16",
    act_formats: Annotated[str, typer.Option(
        "--act-formats", help="Activation formats to choose from: fp32, fp16, int8, int16, dynamic-int8.")
    ] = "int8,int16,fp16",
    granularity: Annotated[str, typer.Option(
        "--granularity", help="Weight granularities: per-tensor, per-channel, per-group-32/64/128.")] = "per-channel",
    calibration: Annotated[str, typer.Option(
        "--calibration", help="Activation calibration methods: minmax, percentile, mse, entropy.")] = "minmax",
    rounding: Annotated[str, typer.Option(
        "--rounding", help="How integer weights are rounded: nearest, gptq (second-order, on calibration "
                           "data; Conv, MatMul and Gemm).")] = "nearest",
    bias_correction: Annotated[str, typer.Option(
        "--bias-correction", help="Correct biases for the mean output shift of rounded weights: off, on, or "
                                  "off,on to let the search choose per layer.")] = "off",
    weight_range: Annotated[str, typer.Option(
        "--weight-range", help="How integer weights are clipped: minmax, mse (least weight error), output-mse "
                               "(least output error on calibration data; Conv, MatMul and Gemm).")] = "minmax",
    sparsity: Annotated[str, typer.Option(
        "--sparsity", help="N:M sparsity patterns to offer besides dense, such as 2:4: at most N non-zero weights "
                           "in every M along a Conv's, MatMul's or Gemm's input, on targets that run them faster "
                           "(nvidia-trt: 2:4).")] = "dense",
    prune: Annotated[str, typer.Option(
        "--prune", help="Shares of output channels the search may remove from each prunable Conv group besides "
                        "none, such as 0.25,0.5: the smaller model's readers are refitted on calibration data "
                        "(see qevo inspect --prune).")] = "0",
    smoothing: Annotated[str, typer.Option(
        "--smoothing", help="SmoothQuant strengths to choose from for MatMul and Gemm inputs: none, or alphas "
                            "such as none,0.5,0.8 (not on targets that quantize every tensor).")] = "none",
    algorithm: Annotated[str, typer.Option(
        "--algorithm", help="auto (NSGA-II up to 3 objectives, NSGA-III for 4), nsga2 or nsga3.")] = "auto",
    pop: Annotated[int, typer.Option("--pop", help="Population size.")] = 32,
    generations: Annotated[int, typer.Option("--generations", help="Stop after this many generations.")] = 30,
    evaluations: Annotated[Optional[int], typer.Option(
        "--evaluations", help="Stop after this many evaluated policies.")] = None,
    time_limit: Annotated[Optional[float], typer.Option(
        "--time-limit", help="Stop after this many seconds.")] = None,
    latency_cmd: Annotated[Optional[str], typer.Option(
        "--latency-cmd", help="Measure each policy's latency with this command: {model} becomes the path of the "
                              "policy's exported model, and the last line it prints is the latency in ms.")] = None,
    latency_timeout: Annotated[float, typer.Option(
        "--latency-timeout", help="Seconds one run of --latency-cmd may take.")] = 120.0,
    racing: Annotated[bool, typer.Option(
        "--racing/--no-racing", help="Measure each new policy on a quarter of the data first and finish only those "
                                     "that could reach the front (data sets of 64 samples or more).")] = True,
    recover_front: Annotated[Optional[bool], typer.Option(
        "--recover-front/--no-recover-front",
        help="Evolve with weights rounded to nearest, then, in the last 30% of --time-limit, measure each front "
             "policy again with its weights recovered (gptq, output-mse range, bias correction; then the "
             "output-mse range alone) on every layer where that applies. Default: on with --time-limit.")] = None,
    seed: Annotated[int, typer.Option("--seed", help="Random seed: the same seed gives the same front.")] = 0,
    workers: Annotated[int, typer.Option("--workers", help="Evaluate in this many processes.")] = 1,
    dask: Annotated[Optional[str], typer.Option(
        "--dask", help="Evaluate on a Dask cluster, e.g. tcp://HOST:8786 (needs qevo[dask]).")] = None,
    out_dir: Annotated[Optional[Path], typer.Option(
        "--out", help="Run directory. Default: qevo-runs/<model>-<target>-<time>.")] = None,
    resume: Annotated[Optional[Path], typer.Option(
        "--resume", help="Continue the run in this directory from its last checkpoint.")] = None,
    config: Annotated[Optional[Path], typer.Option(
        "--config", help="Read settings from a YAML file; flags given on the command line win.")] = None,
    threads: ThreadsOpt = 1,
    quiet: Annotated[bool, typer.Option("--quiet", help="No progress display.")] = False,
    json_output: JsonOpt = False,
) -> None:
    """Search per-layer quantization policies: measured metric against size, latency and energy on a target."""
    given = _flags(ctx, dict(locals()))
    # Everything is checked before the progress display starts, so a mistake prints one line.
    algorithm = None
    if resume is not None:
        typed = _flags(ctx, dict(locals()), command_line_only=True)
        run, algorithm = prepare_resume(resume, {k: v for k, v in typed.items() if k in RESUME_OVERRIDES})
    else:
        settings = SearchConfig.from_file(config, given) if config else SearchConfig.from_mapping({}, None, given)
        run = Search.new(settings)
    with _ProgressDisplay(not (quiet or json_output), run.config.generations) as display:
        run.callback = run.on_progress = display.update
        try:
            result = run.run(algorithm=algorithm)
        except KeyboardInterrupt:
            typer.echo(f"interrupted; the run keeps every finished evaluation. Resume with: "
                       f"qevo search --resume {run.run_dir}", err=True)   # one unwrapped line: copy and run it
            raise typer.Exit(EXIT_INTERRUPTED) from None
    _report(result, json_output)
    if not result.feasible:
        names = ", ".join(f"#{s.id} (over budget by {s.violation:.3g})" for s in result.front.solutions)
        typer.echo(f"error: no policy meets the budgets; the closest are written to {result.run_dir / 'front.json'}: "
                   f"{names}", err=True)
        raise typer.Exit(EXIT_INFEASIBLE)


RESUME_OVERRIDES = ("workers", "dask", "threads")   # how to run, not what to search: a resume may change them


def _flags(ctx: typer.Context, values: dict[str, Any], command_line_only: bool = False) -> dict[str, Any]:
    """Settings the user gave on the command line (or every default when there is no --config)."""
    given: dict[str, Any] = {}
    for option, field_name in FIELDS.items():
        source = ctx.get_parameter_source("out_dir" if option == "out" else option)
        value = values["out_dir" if option == "out" else option]
        # by name: Typer may carry its own copy of click's ParameterSource
        from_command_line = getattr(source, "name", None) == "COMMANDLINE"
        if field_name == "objectives" and not from_command_line:
            continue   # the default set may drop an objective the target cannot separate (SearchConfig)
        if from_command_line or (not command_line_only and values["config"] is None and value is not None):
            given[field_name] = str(value) if isinstance(value, Path) else value
    if values["dim"]:
        given["dims"] = parse_dims(values["dim"])
    return given


class _ProgressDisplay:
    """Generation, evaluations, cache hits, front size and hypervolume, on stderr."""

    def __init__(self, enabled: bool, total: int):
        self.enabled = enabled
        self.total = total
        self.run_dir: Path | None = None
        self._progress = Progress(TextColumn("{task.fields[phase]:<11}"), MofNCompleteColumn(), BarColumn(),
                                  TextColumn("{task.fields[status]}"), TimeElapsedColumn(), console=err,
                                  disable=not enabled, transient=False)
        self._task = None

    def __enter__(self):
        self._progress.__enter__()
        self._task = self._progress.add_task("search", total=self.total, status="starting", phase="starting")
        return self

    def __exit__(self, *exc):
        return self._progress.__exit__(*exc)

    def update(self, progress) -> None:
        left = f"  ~{progress.remaining_s:.0f}s left" if progress.remaining_s is not None else ""
        if progress.phase == "sensitivity":
            status = f"probes {progress.phase_done} of {progress.phase_total} on a data subset{left}"
        elif progress.phase in ("references", "seeding", "starting"):
            status = f"{progress.phase}{left}"
        else:
            cut = f", cut short {progress.estimated}" if progress.estimated else ""
            batch = f"  measuring {progress.batch_done}/{progress.batch_total}" if progress.batch_total else ""
            status = (f"evals {progress.evaluations} (measured {progress.measured}{cut}, cached {progress.cache_hits})  "
                      f"front {progress.front_size}  HV {progress.hypervolume:.4f}{batch}{left}")
        phase = "generation" if progress.phase == "search" else progress.phase
        self._progress.update(self._task, completed=progress.phase_done, total=progress.phase_total or self.total,
                              status=status, phase=phase)


def _report(result: SearchResult, json_output: bool) -> None:
    front = result.front
    progress = result.progress
    if json_output:
        print_json({
            "run_dir": str(result.run_dir), "model": front.model, "target": front.target,
            "metric": front.metric, "fp32_metric": front.fp32_metric, "objectives": front.objectives,
            "feasible": result.feasible, "front_size": len(front.solutions) if result.feasible else 0,
            "evaluated": front.evaluated, "measured": progress.measured,
            "measured_this_session": progress.measured_now, "cache_hits": progress.cache_hits,
            "repeats": progress.repeats,
            "cut_short": progress.estimated, "sensitivity_probes": progress.probes,
            "generations": progress.generation, "seconds": round(progress.elapsed_s, 3),
            "hypervolume": front.hypervolume, "references": [
                {"name": r.name, "objectives": r.objectives, "metric": r.metric} for r in front.references],
            "solutions": [{"id": s.id, "objectives": s.objectives, "metric": s.metric,
                           "feasible": s.feasible, "bits": s.policy.summary()} for s in front.solutions],
            "notes": result.notes})
        return
    objectives = front.objectives
    headers = {"metric": f"{metric_label(front)} drop", "size": "size", "latency": "latency", "energy": "energy"}
    unit = front.metric_unit
    title = (f"{'Pareto front' if result.feasible else 'closest policies (none meets the budgets)'}: "
             f"{len(front.solutions)} policies for {Path(front.model).name} on {front.target} "
             f"({metric_label(front)}, fp32 {metric_value(front.fp32_metric, unit)})")
    table = Table(title=title, title_justify="left")
    table.add_column("id", justify="right")
    for name in objectives:
        table.add_column(headers[name], justify="right")
    table.add_column("bits")
    for reference in front.references:
        table.add_row(f"[dim]{reference.name}[/]",
                      *[f"[dim]{human(n, reference.objectives[n], unit)}[/]" for n in objectives], "[dim]reference[/]")
    for solution in front.solutions:
        table.add_row(str(solution.id), *[human(n, solution.objectives[n], unit) for n in objectives],
                      solution.policy.summary())
    out.print(table)
    cut = (f"; {progress.estimated} more stopped after a data subset as unable to reach the front"
           if progress.estimated else "")
    probes = f"; {progress.probes} sensitivity probes" if progress.probes else ""
    # evaluated = measured + from the cache (this session; a resumed run counts its earlier ones in its store)
    repeats = f", {progress.repeats} proposed again" if progress.repeats else ""
    out.print(f"{front.evaluated} policies evaluated ({progress.measured} measured, {progress.cache_hits} from the "
              f"cache{repeats}){cut}{probes} in {progress.elapsed_s:.1f}s over {progress.generation} generations; "
              f"hypervolume {front.hypervolume:.4f}")
    for note in result.notes:
        out.print(f"[dim]note: {note}[/]")
    out.print(f"run directory: {result.run_dir} (front.json, run.yaml, evaluations.sqlite)")
