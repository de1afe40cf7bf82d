"""Pictures of a front: a PNG with one panel per pair of objectives, and a compact terminal plot."""
from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from pathlib import Path
from .files import atomic_write_bytes
from .front import Front

# front.json stores MB, ms and mJ; plots show the unit that fits the values
_AXIS_SCALES = {"size": [(1.0, "MB"), (1e-3, "kB")], "latency": [(1.0, "ms"), (1e-3, "us")],
                "energy": [(1.0, "mJ"), (1e-3, "uJ"), (1e-6, "nJ")]}


def axis_unit(front: Front, name: str, values: list[float]) -> tuple[float, str]:
    """(divisor, axis label): the unit an objective's values read best in."""
    if name == "metric":
        from .units import metric_label

        if front.metric_unit == "fraction":   # a 0..1 metric's drop reads in points, as the tables show it
            return 0.01, f"{metric_label(front)} drop (points)"
        return 1.0, f"{metric_label(front)} drop ({front.metric_unit or 'metric units'})"
    top = max(abs(v) for v in values) if values else 1.0
    for factor, unit in _AXIS_SCALES[name]:
        if top >= factor:
            return factor, f"{name} ({unit})"
    factor, unit = _AXIS_SCALES[name][-1]
    return factor, f"{name} ({unit})"


def pyplot():
    """matplotlib's pyplot drawing to files, with text taken as written: a layer or model name holding `$`
    is not mathematics."""
    import matplotlib

    matplotlib.use("Agg")
    matplotlib.rcParams["text.parse_math"] = False
    import matplotlib.pyplot as plt

    return plt


LOG_SPAN = 10.0   # an axis whose front values span this factor or more is drawn on a log scale
PAD = 0.08        # of an axis' span, left around the front's points


def save_png(front: Front, path: str | Path, knee_id: int | None = None) -> Path:
    """Write the front against its references: one panel per pair of objectives that separate the policies,
    axes zoomed to the front (a log scale where it spans decades), references beyond the zoom drawn at the
    edge with their value; objectives flat across the front are named in the title instead of drawn."""
    plt = pyplot()

    flat = front.flat_objectives()
    drawn = [name for name in front.objectives if name not in flat]
    pairs = list(itertools.combinations(drawn, 2))
    columns = min(3, max(len(pairs), 1))
    rows = -(-max(len(pairs), 1) // columns)
    figure, axes = plt.subplots(rows, columns, figsize=(5 * columns, 4.2 * rows), squeeze=False)
    solutions = front.solutions
    knee = next((s for s in solutions if s.id == knee_id), None)
    if not pairs:   # one objective left: the policies' values side by side
        _strip(axes.flat[0], front, drawn[0] if drawn else front.objectives[0], knee)
    for ax, (x_name, y_name) in zip(axes.flat, pairs):
        everything = solutions + front.references
        x_scale, x_label = axis_unit(front, x_name, [s.objectives[x_name] for s in everything])
        y_scale, y_label = axis_unit(front, y_name, [s.objectives[y_name] for s in everything])
        xs = [s.objectives[x_name] / x_scale for s in solutions]
        ys = [s.objectives[y_name] / y_scale for s in solutions]
        ax.scatter(xs, ys, s=22, color="#1f77b4", label="Pareto front" if front.feasible else "closest policies",
                   zorder=3)
        x_zoom, y_zoom = zoom(xs, x_name, metric_scale(front)), zoom(ys, y_name, metric_scale(front))
        _references(ax, front, x_name, y_name, (x_scale, y_scale), (x_zoom.limits, y_zoom.limits))
        if knee is not None:
            ax.scatter(knee.objectives[x_name] / x_scale, knee.objectives[y_name] / y_scale, marker="*",
                       s=260, color="#d62728", label=f"knee (#{knee_id})", zorder=5)
        x_zoom.apply(ax, "x", x_label)
        y_zoom.apply(ax, "y", y_label)
        ax.grid(alpha=0.3, which="both")
    for ax in list(axes.flat)[max(len(pairs), 1):]:
        ax.axis("off")
    bottom = legend_below(figure, axes, columns)
    title = f"{Path(front.model).name} on {front.target}: {len(solutions)} polic{'y' if len(solutions) == 1 else 'ies'}"
    if flat:
        from .units import human

        title += "\n" + "; ".join(f"{name} not drawn: every policy within {100 * span:.2g}% "
                                   f"({human(name, min(front.values(name)))} to {human(name, max(front.values(name)))})"
                                   for name, span in flat.items())
    figure.suptitle(title, fontsize=10)
    return save_figure(figure, path, dpi=100, bottom=bottom)


def legend_below(figure, axes, columns: int) -> float:
    """Every panel's legend entries once, under the panels, where they cover no point and no label at an axis'
    edge (a reference off one panel's axes may sit inside another's); the inches it needs."""
    legend = {}
    for ax in axes.flat:
        for handle, label in zip(*ax.get_legend_handles_labels()):
            legend.setdefault(label, handle)
    per_row = 2 if columns == 1 else 3
    if legend:
        figure.legend(list(legend.values()), list(legend), fontsize=8, loc="lower center",
                      ncol=min(len(legend), per_row), frameon=False)
    return 0.15 + 0.22 * -(-len(legend) // per_row)


@dataclass(frozen=True)
class Zoom:
    """An axis zoomed to the front's values: its limits and scale ("linear", "log", or "symlog": linear within
    `linear_width` of zero, logarithmic beyond, for metric drops from a fraction of a point to tens)."""

    limits: tuple[float, float]
    scale: str = "linear"
    linear_width: float = 1.0

    def contains(self, value: float) -> bool:
        return self.limits[0] <= value <= self.limits[1]

    def apply(self, ax, which: str, label: str) -> None:
        from matplotlib.ticker import FixedLocator, FuncFormatter

        axis = getattr(ax, f"{which}axis")
        if self.scale == "symlog":
            getattr(ax, f"set_{which}scale")("symlog", linthresh=self.linear_width, linscale=0.6)
            # 0, then 1-2-5 steps from the linear part's edge up (the default puts several ticks inside it)
            first = 10 ** math.floor(math.log10(self.linear_width))
            steps = [c * first * 10 ** k for k in range(12) for c in (1, 2, 5)]
            ticks = [-v for v in steps if self.linear_width <= v <= -self.limits[0]] + [0.0] + \
                    [v for v in steps if self.linear_width <= v <= self.limits[1]]
            axis.set_major_locator(FixedLocator(ticks))
            axis.set_minor_locator(FixedLocator([]))
            axis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
        else:
            getattr(ax, f"set_{which}scale")(self.scale)
            if self.scale == "log":   # plain numbers: matplotlib writes log ticks as mathtext, which pyplot() turns off
                from matplotlib.ticker import LogLocator, NullFormatter

                if math.log10(self.limits[1] / self.limits[0]) <= 3:   # 1-2-5 steps; decades alone when wider
                    axis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
                axis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
                axis.set_minor_formatter(NullFormatter())
        getattr(ax, f"set_{which}lim")(*self.limits)
        suffix = {"log": " (log)", "symlog": " (log scale beyond 1% of fp32)"}.get(self.scale, "")
        getattr(ax, f"set_{which}label")(label + suffix)


def metric_scale(front: Front) -> float:
    """The fp32 metric in the metric axis' unit (axis_unit): what `zoom` frames a drop against."""
    return front.fp32_metric / axis_unit(front, "metric", [])[0]


def linear_width(metric_scale: float) -> float:
    """1% of the fp32 metric: a symlog drop axis is linear within it, and goes symlog at LOG_SPAN times it."""
    return 0.01 * (abs(metric_scale) or 1.0)


def zoom(values: list[float], name: str, metric_scale: float = 100.0) -> Zoom:
    """The front's values (not the references') framed: a log scale for a cost spanning LOG_SPAN or more; for a
    metric drop reaching beyond LOG_SPAN times 1% of the fp32 metric (`metric_scale`, in the values' unit), a
    symlog scale."""
    low, high = (min(values), max(values)) if values else (0.0, 1.0)
    if name != "metric" and low > 0 and high / low >= LOG_SPAN:
        pad = 10 ** (PAD * math.log10(high / low))
        return Zoom((low / pad, high * pad), "log")
    width = linear_width(metric_scale)
    if name == "metric" and max(abs(low), abs(high)) >= LOG_SPAN * width:
        return Zoom((low - 2 * PAD * abs(low) if low < -width else min(low, 0.0) - 0.2 * width,
                     high + 2 * PAD * abs(high) if high > width else max(high, 0.0) + 0.2 * width), "symlog", width)
    # one value (a front of one policy): a frame of a few ticks around it, not a hair's width
    span = (high - low) or (10 * width if name == "metric" else abs(high) * 0.2 or 1.0)
    return Zoom((low - PAD * span, high + PAD * span) if high > low else (low - span / 2, high + span / 2))


def _references(ax, front: Front, x_name: str, y_name: str, scales, limits) -> None:
    """The references: inside the zoomed axes as points; beyond them as one arrow at the edge per place, with
    each reference's off-scale value written beside it."""
    beyond: dict[tuple, list[str]] = {}
    for reference, marker in zip(front.references, ("s", "D", "P", "o")):   # each reference keeps its marker
        x, y = reference.objectives[x_name] / scales[0], reference.objectives[y_name] / scales[1]
        (x_low, x_high), (y_low, y_high) = limits
        if x_low <= x <= x_high and y_low <= y <= y_high:
            ax.scatter(x, y, marker=marker, s=60, color="#7f7f7f", label=reference.name, zorder=4)
            continue
        arrow = ">" if x > x_high else "<" if x < x_low else "^" if y > y_high else "v"
        beyond_x, beyond_y = not x_low <= x <= x_high, not y_low <= y <= y_high
        value = f"{x:.4g}, {y:.4g}" if beyond_x and beyond_y else f"{x:.4g}" if beyond_x else f"{y:.4g}"
        place = (arrow, min(max(x, x_low), x_high), min(max(y, y_low), y_high))
        beyond.setdefault(place, []).append(f"{reference.name} {value}")
    for number, ((arrow, x, y), names) in enumerate(beyond.items()):
        ax.scatter(x, y, marker=arrow, s=70, color="#7f7f7f", clip_on=False, zorder=4,
                   label=None if number else "reference beyond the axes (its value beside it)")
        ax.annotate("\n".join(names), (x, y), fontsize=7, color="#444444", annotation_clip=False,
                    xytext=(-6 if arrow == ">" else 6, -6 if arrow == "^" else 6), textcoords="offset points",
                    ha="right" if arrow == ">" else "left", va="top" if arrow == "^" else "bottom")


def _strip(ax, front: Front, name: str, knee) -> None:
    """One objective: the policies' values in order, references as lines."""
    scale, label = axis_unit(front, name, [s.objectives[name] for s in front.solutions + front.references])
    ordered = sorted(front.solutions, key=lambda s: s.objectives[name])
    ax.plot(range(len(ordered)), [s.objectives[name] / scale for s in ordered], "o", color="#1f77b4",
            label="Pareto front")
    for reference in front.references:
        ax.axhline(reference.objectives[name] / scale, color="#7f7f7f", linestyle=":", label=reference.name)
    if knee is not None:
        ax.plot(ordered.index(knee), knee.objectives[name] / scale, "*", ms=16, color="#d62728", label="knee")
    ax.set_xticks(range(len(ordered)), [f"#{s.id}" for s in ordered], rotation=45, fontsize=7)
    ax.set_ylabel(label)
    ax.grid(alpha=0.3)


def save_convergence(rows: list[dict], path: str | Path, title: str = "") -> Path:
    """Hypervolume and front size after each generation, against evaluations and against time; the front's
    recovery batches in their own colour, each resume marked where a new process took over."""
    plt = pyplot()

    figure, axes = plt.subplots(1, 2, figsize=(11, 4))
    resumes = [i for i in range(1, len(rows)) if rows[i]["process_started"] != rows[i - 1]["process_started"]]
    for ax, x_name, x_label in ((axes[0], "evaluations", "policies evaluated"),
                                (axes[1], "elapsed_s", "time since the search started (s)")):
        for phase, colour in (("search", "#1f77b4"), ("recovery", "#2ca02c")):
            points = [r for r in rows if r["phase"] == phase]
            if points:
                ax.plot([r[x_name] for r in points], [r["hypervolume"] for r in points], marker="o", ms=3,
                        color=colour, label=f"hypervolume ({'evolution' if phase == 'search' else 'front recovery'})")
        sizes = ax.twinx()
        sizes.plot([r[x_name] for r in rows], [r["front_size"] for r in rows], drawstyle="steps-post", marker=".",
                   color="#7f7f7f", alpha=0.6, label="front size")
        sizes.set_ylabel("front size (policies)", color="#555555")
        sizes.set_ylim(bottom=0)
        for number, i in enumerate(resumes, 1):
            ax.axvline(rows[i][x_name], color="#d62728", linestyle="--", linewidth=1)
            ax.annotate(f"resume {number}", (rows[i][x_name], 0.02), xycoords=("data", "axes fraction"),
                        rotation=90, fontsize=7, color="#d62728")
        ax.set_xlabel(x_label)
        ax.set_ylabel("hypervolume (normalised to fp32)")
        ax.ticklabel_format(axis="y", useOffset=False, style="plain")
        ax.grid(alpha=0.3)
    handles = axes[0].get_legend_handles_labels()[0] + figure.axes[2].get_legend_handles_labels()[0]
    axes[0].legend(handles, [h.get_label() for h in handles], fontsize=8, loc="lower right")
    figure.suptitle(title)
    return save_figure(figure, path, dpi=100)


def save_figure(figure, path: str | Path, dpi: int, bottom: float = 0.0) -> Path:
    """Lay out a matplotlib figure (leaving `bottom` inches free under the panels, for a figure legend), write it
    as a PNG in one step (no half-written file) and close it."""
    import io

    import matplotlib.pyplot as plt

    figure.tight_layout(rect=(0, bottom / figure.get_figheight(), 1, 1))
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
