"""Objective values in units a person reads at a glance."""
from __future__ import annotations

from .metrics import short_name

# base unit of each objective as stored in front.json, and the smaller units to fall back to
_SCALES = {
    "size": ("MB", [(1.0, "MB"), (1e-3, "kB"), (1e-6, "B")]),
    "latency": ("ms", [(1e3, "s"), (1.0, "ms"), (1e-3, "us")]),
    "energy": ("mJ", [(1e3, "J"), (1.0, "mJ"), (1e-3, "uJ"), (1e-6, "nJ")]),
}


def human(objective: str, value: float, metric_unit: str = "") -> str:
    """'size', 0.0026 -> '2.62 kB'; 'metric', 0.11 -> '+0.11' (a drop, in the metric's unit: points for
    '%', dB, points for a 0..1 'fraction'; otherwise two decimals, or three significant digits below 0.01)."""
    if objective == "metric":
        if metric_unit == "fraction":
            return f"{100 * value:+.2f} pt"
        if metric_unit in ("%", "dB"):
            return f"{value:+.2f}{' dB' if metric_unit == 'dB' else ''}"
        return f"{value:+.2f}" if abs(value) >= 0.01 or value == 0 else f"{value:+.3g}"
    _, scales = _SCALES[objective]
    for factor, unit in scales:
        if abs(value) >= factor or factor == scales[-1][0]:
            return f"{value / factor:.4g} {unit}"
    return f"{value:.3g}"


def metric_value(value: float, metric_unit: str = "") -> str:
    """A metric's own value (not a drop) at the precision its unit needs."""
    if metric_unit == "fraction":
        return f"{value:.4f}"
    if metric_unit in ("%", "dB"):
        return f"{value:.3f}{'%' if metric_unit == '%' else ' dB'}"
    return f"{value:.4g}"


def metric_label(front) -> str:
    """The metric's short name for headers (older runs stored only its spec); `front` is a front.Front."""
    return short_name(front.metric_label or front.metric or "metric")
