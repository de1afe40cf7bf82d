"""Objective values in units a person reads at a glance."""
from __future__ import annotations

# base unit of each objective as stored in front.json, and the smaller units to fall back to
_SCALES = {
    "size": ("MB", [(1.0, "MB"), (1e-3, "kB"), (1e-6, "B")]),
    "latency": ("ms", [(1e3, "s"), (1.0, "ms"), (1e-3, "us")]),
    "energy": ("mJ", [(1e3, "J"), (1.0, "mJ"), (1e-3, "uJ"), (1e-6, "nJ")]),
}


def human(objective: str, value: float, metric_unit: str = "") -> str:
    """'size', 0.0026 -> '2.62 kB'; 'metric', 0.11 -> '+0.11' (a drop, in the metric's unit)."""
    if objective == "metric":
        return f"{value:+.2f}{' dB' if metric_unit == 'dB' else ''}"
    _, scales = _SCALES[objective]
    for factor, unit in scales:
        if abs(value) >= factor or factor == scales[-1][0]:
            return f"{value / factor:.4g} {unit}"
    return f"{value:.3g}"
