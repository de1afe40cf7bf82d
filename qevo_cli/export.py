"""A chosen policy as an ONNX model onnxruntime loads, measured again.

The graph editor that built every variant the search measured writes the file, with the
weights stored as the runtime keeps them (see graph_edit). Where storage needs a newer
DequantizeLinear (int4 and per-group: opset 21) the model's default opset is raised first.
Formats no ONNX type holds (3, 5, 6, 7 bits) are refused unless `allow_simulated`, which
writes those weights rounded to their levels in float.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import onnx
import onnxruntime as ort

from .errors import QevoError, first_line
from .evaluate import Evaluator, run_session
from .files import publish, temporary_beside
from .front import Front, Solution
from .stored import storable
from .model import default_opset
from .policy import Policy


@dataclass
class ExportReport:
    path: Path
    measured: float
    expected: float | None
    simulated_layers: list[str]     # weights written as rounded floats (allowed by the caller)
    stored_layers: list[str]        # weights written as the runtime stores them
    opset: int                      # the exported model's default opset
    file_bytes: int

    @property
    def difference(self) -> float | None:
        return None if self.expected is None else self.measured - self.expected


def simulated_layers(evaluator: Evaluator, policy: Policy) -> list[str]:
    """Layers whose weight format no ONNX type stores."""
    return [layer.name for layer in evaluator.model.layers if layer.weight is not None
            and not storable(policy.choice(layer.name))]


def stored_form(evaluator: Evaluator, policy: Policy) -> tuple[onnx.ModelProto, int]:
    """The policy's model with its weights stored as the runtime keeps them, and its default opset (raised
    where storage needs a newer DequantizeLinear)."""
    editor = evaluator.editor_for(policy)
    unpruned = policy.without_pruning()
    opset = max(default_opset(editor.model.proto), editor.required_opset(unpruned))
    return editor.build(unpruned, store=True, base=editor.at_opset(opset)), opset


def export_onnx(evaluator: Evaluator, policy: Policy, output: str | Path, allow_simulated: bool = False,
                expected: float | None = None) -> ExportReport:
    """Write `policy` as a quantized ONNX model at `output`, load it in onnxruntime and measure it."""
    output = Path(output)
    evaluator.check(policy)
    simulated = simulated_layers(evaluator, policy)
    if simulated and not allow_simulated:
        choice = policy.choice(simulated[0])
        raise QevoError(f"layer {simulated[0]!r} uses {choice.weight} weights, which no ONNX type stores "
                        f"({len(simulated)} layer(s) in all); pass --allow-simulated to write them rounded to "
                        "their levels in float", path=output)
    model = evaluator.model
    exported, opset = stored_form(evaluator, policy)
    stored = [layer.name for layer in model.layers if layer.weight is not None and layer.name not in simulated
              and policy.choice(layer.name).weight != "fp32"]
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_beside(output)
    try:
        onnx.save(exported, tmp)
        onnx.checker.check_model(tmp)
        session = ort.InferenceSession(tmp, evaluator.options, providers=["CPUExecutionProvider"])
        measured = evaluator.metric(run_session(session, evaluator.data), evaluator.data.labels, evaluator.reference)
        size = os.path.getsize(tmp)
        publish(tmp, output)
    except QevoError:
        raise
    except Exception as err:  # the checker and onnxruntime raise many types; report them in one line
        raise QevoError(f"export failed: {type(err).__name__}: {first_line(err, '')}", path=output) from None
    finally:
        Path(tmp).unlink(missing_ok=True)
    return ExportReport(output, measured, expected, simulated, stored, opset, size)


OUTPUT_TYPES = (".yaml", ".yml", ".json", ".onnx")


def export_choice(run_dir: str | Path | None, rule: str, output: str | Path, allow_simulated: bool = False,
                  tolerance_percent: float = 0.5) -> dict:
    """Pick one policy of a run's front by `rule` (pick.py) and write it: a policy file (.yaml, .json) with its
    objectives, model and target, or a quantized model (.onnx) loaded and measured again. Returns what was
    written and, for a model, what it measured against the search (`within_tolerance`)."""
    output = check_output(output)
    directory, front, solution = choose(run_dir, rule)
    return write_choice(directory, front, solution, rule, output, allow_simulated, tolerance_percent)


def check_output(output: str | Path) -> Path:
    """`output` if it names a file `export_choice` writes (.yaml, .json, .onnx)."""
    output = Path(output)
    if output.suffix not in OUTPUT_TYPES:
        raise QevoError(f"unsupported output type {output.suffix or '(none)'!r}; expected .yaml, .json or .onnx",
                        path=output)
    return output


def choose(run_dir: str | Path | None, rule: str) -> tuple[Path, Front, Solution]:
    """(run directory, its front, the solution `rule` picks) of a named run, or the most recent one."""
    from .pick import OVER_BUDGET, pick, picks_on
    from .runs import load_front

    directory, front = load_front(run_dir)
    if not picks_on(front, rule):
        raise QevoError(OVER_BUDGET, path=directory)
    return directory, front, pick(front, rule)


def write_choice(directory: Path, front: Front, solution: Solution, rule: str, output: Path,
                 allow_simulated: bool = False, tolerance_percent: float = 0.5) -> dict:
    """Write the `solution` of `front` chosen by `rule` to `output` (see `export_choice`)."""
    from .metrics import tolerance_in_metric_units

    result = {"run_dir": str(directory), "output": str(output), "id": solution.id, "pick": rule,
              "objectives": solution.objectives, "metric": solution.metric}
    if output.suffix != ".onnx":
        _write_policy(front, solution, output)
        return result
    report = export_onnx(_run_evaluator(directory, front), solution.policy, output,
                         allow_simulated=allow_simulated, expected=solution.metric)
    allowed = tolerance_in_metric_units(tolerance_percent, front.fp32_metric)
    result.update({"measured_metric": report.measured, "difference": report.difference,
                   "tolerance_percent": tolerance_percent, "tolerance": allowed,
                   "within_tolerance": abs(report.difference) <= allowed, "opset": report.opset,
                   "file_bytes": report.file_bytes, "simulated_layers": report.simulated_layers,
                   "stored_layers": report.stored_layers})
    return result


def _write_policy(front: Front, solution: Solution, output: Path) -> None:
    import json

    import yaml

    from .files import atomic_write_text

    policy = solution.policy.to_dict()
    data = {"version": policy["version"], "model": front.model, "target": front.target, "metric": front.metric,
            "objectives": {name: solution.objectives[name] for name in front.objectives}, "layers": policy["layers"]}
    # the tensors' formats and their runtime's rules, on a target that quantizes more than layer inputs
    data.update({key: policy[key] for key in ("tensors", "scope") if key in policy})
    data["objectives"]["measured_metric"] = solution.metric
    text = json.dumps(data, indent=2) + "\n" if output.suffix == ".json" else yaml.safe_dump(data, sort_keys=False)
    atomic_write_text(output, text)


def _run_evaluator(directory: Path, front: Front) -> Evaluator:
    """The evaluator of the run's model, data and metric, as run.yaml records them."""
    from .config import SearchConfig
    from .runners import WorkspaceSpec
    from .store import RunStore

    store = RunStore(directory, create=False)
    try:
        config = SearchConfig.from_run(store)
    finally:
        store.close()
    evaluator = WorkspaceSpec.of(config).evaluator()
    if front.model_digest is not None and evaluator.model.digest != front.model_digest:
        raise QevoError("the model file changed since the search; search again", path=evaluator.model.path)
    return evaluator
