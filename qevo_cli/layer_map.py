"""Which layer got which format: the front's policies side by side, one row per layer.

A cell is the layer's choice in short form (`W4A8`, `W16fA16f`, `W32fA32f` for a layer left float), then its
recovery and structure: `g` gptq rounding, `b` bias correction, `o` the output-mse range, `s` N:M sparsity, and
`-25%` when that share of the layer's output channels is pruned.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

from .errors import QevoError
from .front import Solution
from .policy import FP32, Policy

WEIGHT_STYLES = {2: "bold red", 3: "red", 4: "yellow", 5: "yellow", 6: "yellow", 7: "yellow", 8: "green",
                 16: "cyan", 32: "dim"}


def cell(policy: Policy, layer: str) -> str:
    """One layer's choice in a policy, in short form."""
    choice = policy.layers.get(layer, FP32)
    marks = "".join(mark for mark, on in (("g", choice.rounding == "gptq"), ("b", choice.bias_correction),
                                         ("o", choice.weight_range == "output-mse"),
                                         ("s", choice.sparsity != "dense")) if on)
    share = policy.prune.get(layer)
    return choice.short() + (f" {marks}" if marks else "") + (f" -{round(100 * share)}%" if share else "")


def layer_order(model_path: str, solutions: Sequence[Solution]) -> list[str]:
    """The layers in graph order, from the model the front was searched on; in name order, from the policies,
    when that file is gone."""
    from .model import load_model

    try:
        return [layer.name for layer in load_model(Path(model_path)).layers]
    except QevoError:
        return sorted({name for s in solutions for name in list(s.policy.layers) + list(s.policy.prune)})


def layer_map(model_path: str, solutions: Sequence[Solution]) -> dict[str, dict[str, str]]:
    """Layer -> (column: a solution's id, or a reference's name) -> cell."""
    columns = [str(s.id) if s.id is not None else s.name for s in solutions]
    return {layer: {column: cell(s.policy, layer) for column, s in zip(columns, solutions)}
            for layer in layer_order(model_path, solutions)}


def style(text: str) -> str:
    """The rich style of a cell: by its weight bits."""
    bits = int(text[1:].split("A")[0].rstrip("f"))
    return WEIGHT_STYLES.get(bits, "")
