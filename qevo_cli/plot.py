"""Pictures of a front: a PNG with one panel per pair of objectives, and a compact terminal plot."""
from __future__ import annotations

import itertools
from pathlib import Path
from .files import atomic_write_bytes
from .front import Front

# front.json stores MB, ms and mJ; plots show the unit that fits the values
_AXIS_SCALES = {"size": [(1.0, "MB"), (1e-3, "kB")], "latency": [(1.0, "ms"), (1e-3, "us")],
                "energy": [(1.0, "mJ"), (1e-3, "uJ"), (1e-6, "nJ")]}


def _axis(front: Front, name: str, values: list[float]) -> tuple[float, str]:
    if name == "metric":
        return 1.0, f"{front.metric} drop ({front.metric_unit or 'metric units'})"
    top = max(abs(v) for v in values) if values else 1.0
    for factor, unit in _AXIS_SCALES[name]:
        if top >= factor:
            return factor, f"{name} ({unit})"
    factor, unit = _AXIS_SCALES[name][-1]
    return factor, f"{name} ({unit})"


def save_png(front: Front, path: str | Path, knee_id: int | None = None) -> Path:
    """Write the front against its references: one panel per pair of objectives, knee marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    objectives = front.objectives
    pairs = list(itertools.combinations(objectives, 2))
    columns = min(3, len(pairs))
    rows = -(-len(pairs) // columns)
    figure, axes = plt.subplots(rows, columns, figsize=(5 * columns, 4.2 * rows), squeeze=False)
    solutions = front.solutions
    for ax, (x_name, y_name) in zip(axes.flat, pairs):
        xs = [s.objectives[x_name] for s in solutions + front.references]
        ys = [s.objectives[y_name] for s in solutions + front.references]
        x_scale, x_label = _axis(front, x_name, xs)
        y_scale, y_label = _axis(front, y_name, ys)
        ax.scatter([s.objectives[x_name] / x_scale for s in solutions],
                   [s.objectives[y_name] / y_scale for s in solutions], s=22, color="#1f77b4",
                   label="Pareto front" if front.feasible else "closest policies")
        for reference, marker in zip(front.references, ("s", "D", "^")):
            ax.scatter(reference.objectives[x_name] / x_scale, reference.objectives[y_name] / y_scale,
                       marker=marker, s=60, color="#7f7f7f", label=reference.name)
        knee = next((s for s in solutions if s.id == knee_id), None)
        if knee is not None:
            ax.scatter(knee.objectives[x_name] / x_scale, knee.objectives[y_name] / y_scale, marker="*",
                       s=260, color="#d62728", label=f"knee (#{knee_id})", zorder=5)
        ax.set_xlabel(x_label)
        ax.set_ylabel(y_label)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(pairs):]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=8, loc="best")
    figure.suptitle(f"{Path(front.model).name} on {front.target}: {len(solutions)} policies")
    return save_figure(figure, path, dpi=100)


def save_figure(figure, path: str | Path, dpi: int) -> Path:
    """Lay out a matplotlib figure, write it as a PNG in one step (no half-written file) and close it."""
    import io

    import matplotlib.pyplot as plt

    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi)
    plt.close(figure)
    atomic_write_bytes(path, buffer.getvalue())
    return Path(path)


def terminal_plot(front: Front, x_name: str, y_name: str, width: int = 60, height: int = 14,
                  knee_id: int | None = None) -> list[str]:
    """A character scatter of two objectives: '*' policies, 'K' the knee, 'F' fp32, 'W' W8A8."""
    points = [(s.objectives[x_name], s.objectives[y_name], "K" if s.id == knee_id else "*")
              for s in front.solutions]
    points += [(r.objectives[x_name], r.objectives[y_name], "F" if r.name == "fp32" else "W")
               for r in front.references]
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    x_low, x_high, y_low, y_high = min(xs), max(xs), min(ys), max(ys)
    grid = [[" "] * width for _ in range(height)]
    for x, y, mark in sorted(points, key=lambda p: p[2] == "K"):   # the knee is drawn last, on top
        col = 0 if x_high == x_low else round((x - x_low) / (x_high - x_low) * (width - 1))
        row = 0 if y_high == y_low else round((y - y_low) / (y_high - y_low) * (height - 1))
        grid[height - 1 - row][col] = mark
    from .units import human

    unit = front.metric_unit
    lines = [f"{y_name} {human(y_name, y_high, unit):>10} |" + "".join(grid[0])]
    lines += [" " * (len(y_name) + 12) + "|" + "".join(row) for row in grid[1:-1]]
    lines.append(f"{y_name} {human(y_name, y_low, unit):>10} |" + "".join(grid[-1]))
    lines.append(" " * (len(y_name) + 12) + "+" + "-" * width)
    left, right = human(x_name, x_low, unit), human(x_name, x_high, unit)
    lines.append(" " * (len(y_name) + 13) + f"{x_name} {left}" + " " * max(1, width - len(left) - len(right) - len(x_name) - 2) + right)
    return lines
