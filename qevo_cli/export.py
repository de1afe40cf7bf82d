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
    editor = evaluator.editor
    opset = max(default_opset(evaluator.model.proto), editor.required_opset(policy))
    return editor.build(policy, store=True, base=editor.at_opset(opset)), opset


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
