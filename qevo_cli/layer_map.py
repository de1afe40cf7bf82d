"""Which layer got which format: the front's policies side by side, one row per layer.

A cell is the layer's choice in short form (`W4A8`, `W16fA16f`, `W32fA32f` for a layer left float), then what
differs from the defaults (per-channel symmetric weights on their min-max range, rounded to nearest; min-max
activation ranges): the granularity `pt` (per-tensor) or `g64` (per-group of 64), `asym`, the calibration `pct`,
`mse` or `ent`, `sq0.5` smoothing, and the recovery and structure: `g` gptq rounding, `b` bias correction, `o`
the output-mse range (`m` the weights' mse range), `s` N:M sparsity, and `-25%` when that share of the layer's
output channels is pruned.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Sequence

from .errors import QevoError
from .front import Solution
from .policy import FP32, Policy
from .units import human

WEIGHT_STYLES = {2: "bold red", 3: "red", 4: "yellow", 5: "yellow", 6: "yellow", 7: "yellow", 8: "green",
                 16: "cyan", 32: "dim"}


GRANULARITY_MARKS = {"per-tensor": "pt", "per-channel": "", "per-group-32": "g32", "per-group-64": "g64",
                     "per-group-128": "g128"}
CALIBRATION_MARKS = {"minmax": "", "percentile": "pct", "mse": "mse", "entropy": "ent"}


def cell(policy: Policy, layer: str) -> str:
    """One layer's choice in a policy, in short form."""
    choice = policy.layers.get(layer, FP32)
    settings = []
    if choice.weight_is_int:
        settings += [GRANULARITY_MARKS[choice.granularity], "" if choice.symmetric else "asym"]
    if choice.activation_is_static_int:
        settings.append(CALIBRATION_MARKS[choice.calibration])
    if choice.smoothed:
        settings.append(f"sq{choice.smoothing:g}")
    recovery = "".join(mark for mark, on in (("g", choice.rounding == "gptq"), ("b", choice.bias_correction),
                                            ("o", choice.weight_range == "output-mse"),
                                            ("m", choice.weight_range == "mse"),
                                            ("s", choice.sparsity != "dense")) if on)
    share = policy.prune.get(layer)
    words = [choice.short(), *settings, recovery, f"-{round(100 * share)}%" if share else ""]
    return " ".join(word for word in words if word)


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


def column_titles(front, solutions: Sequence[Solution]) -> list[str]:
    """The heatmap's column labels: a reference's name, or a policy's id and metric drop."""
    return [s.name if s.id is None else f"#{s.id} ({human('metric', s.objectives['metric'], front.metric_unit)})"
            for s in solutions]


def weight_sensitivity(table: dict | None) -> tuple[str, dict[str, float]] | None:
    """From a run's sensitivity.json: (column label, layer -> model output SQNR in dB) at the run's fewest-bit
    integer weight format, the one that tells sensitive layers apart best; None without a table."""
    if not table:
        return None
    bits = {c: int(c[5:]) for c in table.get("columns", []) if re.fullmatch(r"W:int\d+", c)}
    if not bits:
        return None
    column = min(bits, key=bits.get)
    values = {layer: row[column] for layer, row in table["sqnr_db"].items() if column in row}
    return f"SQNR W{bits[column]} alone (dB)", values


SENSITIVE_DB, DOUBTFUL_DB = 10.0, 20.0   # output SQNR below which a layer alone at a format is marked


def sensitivity_level(db: float | None) -> str:
    """"sensitive" below SENSITIVE_DB, "doubtful" below DOUBTFUL_DB, else "" (and for no value): the layers
    whose weights cannot take the format alone, or hardly."""
    if db is None:
        return ""
    return "sensitive" if db < SENSITIVE_DB else "doubtful" if db < DOUBTFUL_DB else ""


def sensitivity_style(db: float) -> str:
    """The rich style of a sensitivity value: red when sensitive, yellow when doubtful."""
    return {"sensitive": "red", "doubtful": "yellow"}.get(sensitivity_level(db), "")


def style(text: str) -> str:
    """The rich style of a cell: by its weight bits."""
    return WEIGHT_STYLES.get(_bits(text), "")


def save_layer_map(grid: dict[str, dict[str, str]], titles: Sequence[str], path: str | Path,
                   title: str = "", sensitivity: tuple[str, dict[str, float]] | None = None) -> Path:
    """The grid as a PNG heatmap: layers down, policies across (`titles` label the columns), each cell coloured
    by its weight bits and labelled with its text where the cells are large enough to read; `sensitivity`
    (weight_sensitivity's) drawn beside it as one bar per layer, so the sensitive layers' bits can be read off."""
    from .plot import pyplot, save_figure

    plt = pyplot()
    import numpy as np
    from matplotlib.colors import BoundaryNorm, ListedColormap

    layers = list(grid)
    columns = list(next(iter(grid.values()))) if grid else []
    bits = np.array([[_bits(grid[layer][column]) for column in columns] for layer in layers], dtype=float)
    levels = [2, 3, 4, 8, 16, 32]
    colours = ListedColormap(["#b2182b", "#ef8a62", "#fddbc7", "#67a9cf", "#2166ac", "#d9d9d9"])
    norm = BoundaryNorm([1.5, 2.5, 3.5, 7.5, 15.5, 31.5, 32.5], colours.N)
    height = min(2 + 0.28 * len(layers), 60)
    width = min(3 + 1.1 * len(columns) + 0.06 * max((len(l) for l in layers), default=0), 40)
    if sensitivity:
        figure, (side, ax) = plt.subplots(1, 2, figsize=(width + 2.2, height), sharey=True,
                                          gridspec_kw={"width_ratios": [2.2, max(width - 3, 1.5)]})
        label, values = sensitivity
        known = [values.get(layer) for layer in layers]
        side.barh(range(len(layers)), [v if v is not None else 0 for v in known],
                  color=[{"sensitive": "#54278f", "doubtful": "#9e9ac8"}.get(sensitivity_level(v), "#d9d9d9")
                         for v in known])
        for i, v in enumerate(known):
            side.text(0.5, i, "-" if v is None else f"{v:.0f}", va="center", fontsize=6.5)
        side.invert_xaxis()
        side.set_xlabel(label, fontsize=8)
        side.set_title("sensitivity\n(short bar: sensitive)", fontsize=8)
        side.tick_params(axis="x", labelsize=7)
    else:
        figure, ax = plt.subplots(figsize=(width, height))
    ax.imshow(bits, aspect="auto", cmap=colours, norm=norm, interpolation="nearest")
    if len(layers) <= 80 and len(columns) <= 24:
        for i, layer in enumerate(layers):
            for j, column in enumerate(columns):
                ax.text(j, i, grid[layer][column], ha="center", va="center", fontsize=6.5,
                        color="white" if bits[i, j] in (2, 16) else "black")
    ax.set_xticks(range(len(columns)), labels=list(titles), rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(len(layers)), labels=layers, fontsize=7 if len(layers) <= 80 else 4)
    handles = [plt.Rectangle((0, 0), 1, 1, color=colours(k)) for k in range(len(levels))]
    ax.legend(handles, ["2-bit", "3-bit", "4-7-bit", "8-bit", "16-bit float", "fp32"], title="weights",
              bbox_to_anchor=(1.01, 1), loc="upper left", fontsize=8)
    ax.set_title(title, fontsize=10)
    return save_figure(figure, path, dpi=110)


def _bits(text: str) -> int:
    return int(text[1:].split("A")[0].rstrip("f"))
