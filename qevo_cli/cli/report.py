"""`qevo report`: a run as one HTML page a person opens in a browser."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from ..report import write_report
from .common import handle_errors, out, print_json
from .options import JsonOpt


@handle_errors
def report(
    run_dir: Annotated[Optional[Path], typer.Argument(
        help="Run directory. Default: the most recent run under ./qevo-runs.", show_default=False)] = None,
    output: Annotated[Path, typer.Option(
        "-o", "--output", help="The HTML file to write (self-contained: figures and data inside).")] = Path("report.html"),
    pick_rule: Annotated[str, typer.Option(
        "--pick", help="The policy the page opens on: knee, weights=..., an id, or a rule such as "
                       "max-drop=1.0,min=latency.")] = "knee",
    json_output: JsonOpt = False,
) -> None:
    """Write one HTML page with the run's front (policies selectable, each with its layers), convergence,
    sensitivity, the chosen policy and the commands that reproduce and export it."""
    summary = write_report(run_dir, output, pick_rule)
    if json_output:
        print_json(summary)
        return
    opens = f"opens on #{summary['chosen']}" if summary["chosen"] is not None else "no policy picked"
    out.print(f"report written to {output} ({summary['policies']} policies, {opens}; "
              f"figures: {', '.join(summary['figures']) or 'none'})")
