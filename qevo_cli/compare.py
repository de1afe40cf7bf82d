"""Several runs side by side: one model on several targets, or one target with several settings.

Each run keeps its own front, hypervolume and references; what is compared is what a rule picks on each
(the knee, or a rule such as max-drop=1.0,min=latency) and, drawn on shared axes, the fronts themselves
where the runs have the objectives (and, for the metric axis, the metric) in common.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from .errors import QevoError
from .front import FLAT_SPAN, OBJECTIVE_NAMES, Front, Solution, relative_span
from .pick import OVER_BUDGET, pick, picks_on
from .runs import load_front

MARKERS = ("o", "s", "^", "D", "v", "P", "X", "h")
COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf")


@dataclass
class ComparedRun:
    label: str
    directory: Path
    front: Front
    chosen: Solution | None     # what the rule picked; None when it picks nothing on this run
    refusal: str = ""           # why it picked nothing

    def to_dict(self) -> dict[str, Any]:
        front = self.front
        return {"label": self.label, "run_dir": str(self.directory), "model": front.model, "target": front.target,
                "metric": front.metric, "objectives": front.objectives, "fp32_metric": front.fp32_metric,
                "policies": len(front.solutions), "evaluated": front.evaluated, "hypervolume": front.hypervolume,
                "feasible": front.feasible, "flat": front.flat_objectives(),
                "references": [r.to_dict() for r in front.references],
                "picked": None if self.chosen is None else {**self.chosen.to_dict(),
                                                            "bits": self.chosen.policy.summary()},
                **({"refusal": self.refusal} if self.refusal else {})}


def compare_runs(run_dirs: Sequence[Path], rule: str = "knee") -> list[ComparedRun]:
    """Every run's front and what `rule` picks on it. A rule that picks nothing on one run (nothing within its
    max-drop, say) is reported for that run; a rule no run can apply is an error."""
    if len(run_dirs) < 2:
        raise QevoError("expected two or more run directories to compare", field="RUN_DIR")
    resolved = [Path(d).resolve() for d in run_dirs]
    for index, where in enumerate(resolved):
        if where in resolved[:index]:
            raise QevoError("is given twice", path=run_dirs[index], field="RUN_DIR")
    runs = []
    names = [where.name for where in resolved]
    for directory, name in zip(run_dirs, names):
        label = name if names.count(name) == 1 else str(directory)   # two runs named alike: their paths
        directory, front = load_front(directory)
        try:
            chosen, refusal = pick(front, rule), ""   # a rule that cannot be read fails here, on every run alike
            if not picks_on(front, rule):
                chosen, refusal = None, OVER_BUDGET
        except QevoError as err:
            chosen, refusal = None, err.message
        runs.append(ComparedRun(label, directory, front, chosen, refusal))
    if all(run.chosen is None for run in runs):
        reason = next((run.refusal for run in runs if run.front.feasible), runs[0].refusal)
        raise QevoError(f"picks nothing on any run: {reason}", field="--pick")
    return runs


def best_across(runs: Sequence[ComparedRun], rule: str) -> tuple[str, ComparedRun] | None:
    """(objective, run) whose pick is least in the rule's min=OBJECTIVE, among runs of one model and metric
    (a drop in one model's accuracy says nothing of another's); None for other rules or mixed runs."""
    objective = next((part.partition("=")[2].strip() for part in rule.split(",")
                      if part.strip().startswith("min=")), None)
    picked = [run for run in runs if run.chosen is not None and objective in run.chosen.objectives]
    if objective is None or len(picked) < 2:
        return None
    if len({(run.front.model_digest or run.front.model, run.front.metric) for run in runs}) != 1:
        return None
    return objective, min(picked, key=lambda run: (run.chosen.objectives[objective], run.label))


def shared_pairs(runs: Sequence[ComparedRun]) -> tuple[list[tuple[str, str]], list[str]]:
    """The pairs of quantities every run's policies were costed in (a run records size, latency and energy even
    where they were not its objectives), each drawn on shared axes; and notes on what is left out or differs."""
    solutions = [s for run in runs for s in run.front.solutions]
    common = [name for name in OBJECTIVE_NAMES if solutions and all(name in s.objectives for s in solutions)]
    notes = []
    if "metric" in common and len({run.front.metric for run in runs}) > 1:
        common.remove("metric")
        notes.append("the runs measure different metrics: drops are not drawn on one axis")
    for name in [n for n in common if n != "metric"]:
        span = relative_span([s.objectives[name] for s in solutions])
        if span < FLAT_SPAN:
            common.remove(name)
            notes.append(f"{name} separates no policy of any run (all within {100 * span:.2g}%): not drawn")
    not_searched: dict[str, list[str]] = {}
    for run in runs:
        for name in common:
            if name not in run.front.objectives:
                not_searched.setdefault(name, []).append(run.label)
    for name, labels in not_searched.items():
        if len(labels) == len(runs):
            notes.append(f"{name}: no run searched on it; the fronts are drawn there as they stand")
        else:
            notes.append(f"{name}: {', '.join(labels)} did not search on it; drawn there as "
                         f"{'they stand' if len(labels) > 1 else 'it stands'}")
    if "metric" in common:   # what a person trades: the metric against each cost
        return [("metric", name) for name in common if name != "metric"], notes
    return list(itertools.combinations(common, 2)), notes


def save_comparison(runs: Sequence[ComparedRun], path: str | Path, rule: str) -> Path:
    """Each run's front in its own colour on shared axes (a log scale where the values span decades), its pick
    starred, fp32 as a hollow square where it falls inside the zoom."""
    from .plot import axis_unit, legend_below, metric_scale, pyplot, save_figure, zoom

    plt = pyplot()

    pairs, notes = shared_pairs(runs)
    if not pairs:
        raise QevoError("the runs share no pair of objectives that separates policies: nothing to draw"
                        + (f" ({'; '.join(notes)})" if notes else ""), path=path, field="--png")
    columns = min(3, len(pairs))
    rows = -(-len(pairs) // columns)
    figure, axes = plt.subplots(rows, columns, figsize=(5.4 * columns, 4.4 * rows), squeeze=False)
    first = runs[0].front
    for ax, (x_name, y_name) in zip(axes.flat, pairs):
        solutions = [s for run in runs for s in run.front.solutions]
        x_scale, x_label = axis_unit(first, x_name, [s.objectives[x_name] for s in solutions])
        y_scale, y_label = axis_unit(first, y_name, [s.objectives[y_name] for s in solutions])
        xs = [s.objectives[x_name] / x_scale for s in solutions]
        ys = [s.objectives[y_name] / y_scale for s in solutions]
        x_zoom, y_zoom = zoom(xs, x_name, metric_scale(first)), zoom(ys, y_name, metric_scale(first))
        for index, run in enumerate(runs):
            # colour and marker: a pair of its own for each of up to 64 runs
            colour, marker = COLOURS[index % len(COLOURS)], MARKERS[(index + index // len(COLOURS)) % len(MARKERS)]
            ax.scatter([s.objectives[x_name] / x_scale for s in run.front.solutions],
                       [s.objectives[y_name] / y_scale for s in run.front.solutions], marker=marker, s=20,
                       color=colour, alpha=0.8, label=f"{run.label} ({run.front.target})")
            if run.chosen is not None:
                ax.scatter(run.chosen.objectives[x_name] / x_scale, run.chosen.objectives[y_name] / y_scale,
                           marker="*", s=240, color=colour, edgecolor="black", linewidth=0.6, zorder=5)
            reference = next((r for r in run.front.references if r.name == "fp32"), None)
            if reference is not None:
                x, y = reference.objectives[x_name] / x_scale, reference.objectives[y_name] / y_scale
                if x_zoom.contains(x) and y_zoom.contains(y):
                    ax.scatter(x, y, marker="s", s=55, facecolor="none", edgecolor=colour, zorder=4)
        x_zoom.apply(ax, "x", x_label)
        y_zoom.apply(ax, "y", y_label)
        ax.grid(alpha=0.3, which="both")
    for ax in list(axes.flat)[len(pairs):]:
        ax.axis("off")
    bottom = legend_below(figure, axes, columns)
    title = f"{len(runs)} runs compared; star: the pick ({rule}); hollow square: fp32 where in view"
    figure.suptitle("\n".join([title, *notes]), fontsize=9)
    return save_figure(figure, path, dpi=100, bottom=bottom)
