"""`qevo profiles`: list the built-in targets, show one, fit one to measurements."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.table import Table

from ..errors import QevoError
from ..fit import FitResult, run_fit
from ..fit_models import run_fit_to_run
from ..policy import ACTIVATION_FORMATS, WEIGHT_FORMATS
from ..profile_schema import sources_for, value_paths
from ..profiles import Profile, list_profiles, load_profile
from .common import handle_errors, out, print_json

app = typer.Typer(help="Hardware profiles: the targets qevo costs policies on, where their numbers come from, "
                       "and fitting them to your measurements.", no_args_is_help=True)

JsonOption = Annotated[bool, typer.Option("--json", help="Write JSON to stdout and nothing else.")]
FLAG_LETTER = {"measured": "M", "datasheet": "D", "estimate": "E"}


@app.command("list")
@handle_errors
def list_command(as_json: JsonOption = False) -> None:
    """List the built-in profiles: chip, formats offered and how many sources back them."""
    rows = [_summary(load_profile(name)) for name in list_profiles()]
    if as_json:
        print_json(rows)
        return
    table = Table(title="Built-in hardware profiles")
    for column in ("name", "chip", "weights", "activations", "computes", "sources (M/D/E)"):
        table.add_column(column)
    for row in rows:
        flags = row["source_flags"]
        table.add_row(row["name"], row["chip"], " ".join(row["weights"]), " ".join(row["activations"]),
                      " ".join(row["compute"]),
                      f"{row['sources']} ({flags['measured']}/{flags['datasheet']}/{flags['estimate']})")
    out.print(table)


@app.command("show")
@handle_errors
def show_command(
    target: Annotated[str, typer.Argument(help="A built-in profile name (see qevo profiles list) or a profile YAML file.")],
    as_json: JsonOption = False,
) -> None:
    """Show every value of a profile with the sources and flags behind it."""
    profile = load_profile(target)
    if as_json:
        print_json(_details(profile))
        return
    spec = profile.spec
    out.print(f"[bold]{profile.name}[/bold]: {profile.chip}")
    out.print(spec.description)
    if not profile.builtin:
        out.print(f"file: {profile.path}")
    if spec.fitted:
        fitted = spec.fitted
        out.print(f"fitted from {fitted.base} to {fitted.rows} layers in {fitted.measurements} "
                  f"(median relative error {fitted.median_relative_error:.1%})")
    values = Table(title="Values (flags: M measured, D datasheet, E estimate)")
    for column in ("key", "value", "sources"):
        values.add_column(column)
    for key, value in value_paths(spec).items():
        values.add_row(key, value, ", ".join(f"{s.id} [{FLAG_LETTER[s.flag]}]" for s in sources_for(spec, key)) or "-")
    out.print(values)
    out.print(_offered_table(profile))
    sources = Table(title="Sources")
    for column in ("id", "flag", "what", "reference"):
        sources.add_column(column)
    for source in spec.sources:
        sources.add_row(source.id, source.flag, source.what, source.reference)
    out.print(sources)


@app.command("fit")
@handle_errors
def fit_command(
    base: Annotated[str, typer.Option("--base", help="Profile to start from: a built-in name or a YAML file.")],
    output: Annotated[Path, typer.Option("-o", "--output", help="Where to write the fitted profile (.yaml).")],
    measurements: Annotated[Optional[Path], typer.Argument(
        help="CSV of measured layers: kind, macs, weight_bytes, activation_bytes, weight_format, "
             "activation_format and latency_s (or latency_ms, latency_us); optional layer.")] = None,
    name: Annotated[Optional[str], typer.Option(
        "--name", help="Name of the fitted profile; defaults to the output file's name.")] = None,
    from_run: Annotated[Optional[Path], typer.Option(
        "--from-run", help="Fit to the measured latencies of a search run (--target host or --latency-cmd): one "
                           "row per policy, predicted as the cost model adds up its layers.")] = None,
    as_json: JsonOption = False,
) -> None:
    """Fit throughputs, bandwidth and overheads to measured latencies; write a new profile."""
    if (measurements is None) == (from_run is None):
        raise QevoError("expected either a CSV of measured layers or --from-run RUN, not both or neither",
                        field="measurements")
    result = run_fit_to_run(from_run, base, output, name) if from_run else run_fit(measurements, base, output, name)
    if as_json:
        print_json(result.to_dict())
        return
    _print_fit(result, base)


def _summary(profile: Profile) -> dict[str, Any]:
    weights, activations = profile.offered_formats()
    flags = {flag: 0 for flag in FLAG_LETTER}
    for source in profile.spec.sources:
        flags[source.flag] += 1
    return {"name": profile.name, "chip": profile.chip, "weights": weights, "activations": activations,
            "compute": list(profile.spec.compute), "sources": len(profile.spec.sources), "source_flags": flags}


def _details(profile: Profile) -> dict[str, Any]:
    spec = profile.spec
    return {
        "path": None if profile.builtin else profile.path,
        "profile": profile.to_dict(),
        "values": [{"key": key, "value": value,
                    "sources": [{"id": s.id, "flag": s.flag} for s in sources_for(spec, key)]}
                   for key, value in value_paths(spec).items()],
        "offered": {weight: {activation: profile.run_label(weight, activation) for activation in ACTIVATION_FORMATS}
                    for weight in WEIGHT_FORMATS},
    }


def _offered_table(profile: Profile) -> Table:
    table = Table(title="What runs as what (weight format x activation format; '-' not offered)")
    table.add_column("weight")
    for activation in ACTIVATION_FORMATS:
        table.add_column(activation)
    for weight in WEIGHT_FORMATS:
        table.add_row(weight, *(profile.run_label(weight, activation) or "-" for activation in ACTIVATION_FORMATS))
    return table


def _print_fit(result: FitResult, base: str) -> None:
    table = Table(title=f"Fitted {result.profile.name} from {base}")
    for column in ("key", "before", "after"):
        table.add_column(column)
    for value in result.values:
        table.add_row(value.key, value.before, value.after)
    out.print(table)
    what, many = ("policy", "policies") if any(v.key == "overhead.per_graph" for v in result.values) \
        else ("layer", "layers")
    out.print(f"median relative error per {what} over {len(result.rows)} {many}: "
              f"{result.base_median_relative_error:.1%} with {base}, {result.median_relative_error:.1%} fitted")
    out.print(f"wrote {result.profile.path}")
