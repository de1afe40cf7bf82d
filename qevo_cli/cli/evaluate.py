"""`qevo evaluate`: measure one policy file on a model's data."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ..policy import Policy
from ..units import human, metric_value
from ..workspace import open_workspace, parse_dims
from .common import err, handle_errors, out, print_json
from .options import CalibOpt, DataOpt, DimOpt, JsonOpt, MetricOpt, ModelArg, ThreadsOpt


@handle_errors
def evaluate(
    model: ModelArg = None,
    policy: Annotated[Path, typer.Option("--policy", help="Policy file (.yaml or .json) to measure.")] = ...,
    data: DataOpt = None,
    calib: CalibOpt = None,
    metric: MetricOpt = None,
    dim: DimOpt = None,
    threads: ThreadsOpt = 1,
    json_output: JsonOpt = False,
) -> None:
    """Measure a quantization policy: build the variant and run it in onnxruntime on the data."""
    chosen = Policy.load(policy)
    workspace = open_workspace(model, data, calib, metric, parse_dims(dim))
    evaluator = workspace.evaluator(threads)
    evaluator.check(chosen)
    score = evaluator.evaluate(chosen)
    result = {"model": str(workspace.model.path), "policy": str(policy), "metric": workspace.metric.name,
              "fp32": evaluator.fp32_score, "score": score, "drop": evaluator.fp32_score - score,
              "samples": workspace.data.size}
    if json_output:
        print_json(result)
        return
    unit = workspace.metric.display_unit(evaluator.fp32_score)
    out.print(f"{workspace.metric.label}: [bold]{metric_value(score, unit)}[/] (fp32 "
              f"{metric_value(evaluator.fp32_score, unit)}, drop {human('metric', result['drop'], unit)}) on "
              f"{result['samples']} samples")
    if len(chosen.layers) < len(workspace.model.layers):
        err.print(f"{len(workspace.model.layers) - len(chosen.layers)} layer(s) not named in the policy stay fp32")
