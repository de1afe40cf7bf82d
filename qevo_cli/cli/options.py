"""Options shared by several commands, declared once."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

ModelArg = Annotated[Optional[Path], typer.Argument(
    help="ONNX model file. Default: qevo's bundled digits CNN with its data.", show_default=False)]
DataOpt = Annotated[Optional[Path], typer.Option(
    "--data", help="Evaluation data (.npz): one array per model input, optional 'labels'.")]
CalibOpt = Annotated[Optional[Path], typer.Option(
    "--calib", help="Calibration data (.npz) for static activation ranges. Default: the --data file.")]
MetricOpt = Annotated[Optional[str], typer.Option(
    "--metric", help="accuracy, agreement, sqnr, cosine, FILE.py:NAME or module:NAME. "
                     "Default: accuracy with labels, else agreement.")]
DimOpt = Annotated[Optional[list[str]], typer.Option(
    "--dim", help="Fix a dynamic input dim for counting MACs, as NAME=VALUE (repeatable). Default 1.")]
ThreadsOpt = Annotated[int, typer.Option("--threads", min=1, help="onnxruntime threads per evaluation.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON to stdout and nothing else.")]
