"""The `qevo` command line: a thin layer over the library."""
from __future__ import annotations

import typer

from . import evaluate as evaluate_cmd
from . import inspect as inspect_cmd
from .pareto import app as pareto_app
from .pareto import export as export_command
from .profiles import app as profiles_app
from .search import search as search_command

app = typer.Typer(
    name="qevo",
    help="Search per-layer quantization policies that trade measured quality against size, latency and energy "
         "on a named hardware target.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.command("search")(search_command)
app.command("inspect")(inspect_cmd.inspect)
app.command("evaluate")(evaluate_cmd.evaluate)
app.command("export")(export_command)
app.add_typer(pareto_app, name="pareto")
app.add_typer(profiles_app, name="profiles")


def main() -> None:
    app()
