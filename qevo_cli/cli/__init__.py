"""The `qevo` command line: a thin layer over the library."""
from __future__ import annotations

import sys

import typer
from typer.core import TyperGroup

from . import evaluate as evaluate_cmd
from . import inspect as inspect_cmd
from . import report as report_cmd
from .pareto import app as pareto_app
from .pareto import export as export_command
from .profiles import app as profiles_app
from .search import search as search_command

def _is(err: BaseException, name: str) -> bool:
    """Whether `err` is click's exception `name` (typer may carry its own copy of click)."""
    return any(kind.__name__ == name for kind in type(err).__mro__)


class _OneLineErrors(TyperGroup):
    """A usage mistake (an unknown option, a value of the wrong type) is one `error:` line and exit 2, like
    every other mistake, for the scripts that read stderr; everything else as click does it."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        try:
            code = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except Exception as err:
            if _is(err, "NoArgsIsHelpError"):
                err.show()   # the help text
            elif _is(err, "ClickException"):
                where = f"{err.ctx.command_path}: " if getattr(err, "ctx", None) is not None else ""
                hint = " (see --help)" if _is(err, "UsageError") else ""
                typer.echo(f"error: {where}{err.format_message()}{hint}", err=True)
            elif _is(err, "Abort"):
                typer.echo("aborted", err=True)
                sys.exit(1)
            else:
                raise
            sys.exit(err.exit_code)
        sys.exit(code if isinstance(code, int) else 0)


app = typer.Typer(
    cls=_OneLineErrors,
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
app.command("report")(report_cmd.report)
app.add_typer(pareto_app, name="pareto")
app.add_typer(profiles_app, name="profiles")


def main() -> None:
    app()
