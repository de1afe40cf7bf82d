"""One HTML file that shows a run: its front (policies selectable, each with its per-layer map), convergence,
sensitivity, the chosen policy and the commands that reproduce and export it.

The page carries everything it shows: the figures as PNG data, the front as JSON read by a short script that
draws the selectable scatter. Nothing is fetched when it is opened, so it can be mailed or archived as is.
"""
from __future__ import annotations

import base64
import html
import json
import shlex
import tempfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import yaml

from .errors import QevoError
from .files import atomic_write_text
from .front import Front, Solution
from .layer_map import (DOUBTFUL_DB, SENSITIVE_DB, column_titles, layer_map, save_layer_map, sensitivity_level,
                        weight_sensitivity)
from .pick import knee_id, pick, picks_on
from .plot import axis_unit, linear_width, metric_scale, save_convergence, save_png
from .runs import NO_CONVERGENCE, convergence_steps, load_convergence, load_front, load_sensitivity, read_run_config
from .units import human, metric_label, metric_value

ASSETS = Path(__file__).with_name("report_assets")


def write_report(run_dir: Path | None, output: Path, pick_rule: str = "knee") -> dict[str, Any]:
    """Write the run's report to `output` (whole or not at all); what it holds, for --json."""
    if output.suffix.lower() not in (".html", ".htm"):
        raise QevoError(f"got {output.suffix or 'no suffix'}, expected an .html file", path=output, field="-o")
    directory, front = load_front(run_dir)
    page, summary = build_report(directory, front, pick_rule)
    atomic_write_text(output, page)
    return {"report": str(output), "run_dir": str(directory), **summary}


def build_report(directory: Path, front: Front, pick_rule: str) -> tuple[str, dict[str, Any]]:
    """The page's HTML, and a summary of what it shows."""
    chosen = pick(front, pick_rule) if front.solutions else None   # a rule that cannot be read fails here
    if not picks_on(front, pick_rule):
        chosen = None
    knee = knee_id(front)
    sensitivity_table = load_sensitivity(directory)
    sensitivity = weight_sensitivity(sensitivity_table)
    history = load_convergence(directory)
    shown = front.references + front.solutions
    grid = layer_map(front.model, shown)
    figures = _figures(front, grid, shown, history, sensitivity, knee)
    settings = read_run_config(directory)
    data = {
        "model": front.model, "target": front.target, "run_dir": str(directory), "objectives": front.objectives,
        "axes": {name: [*axis_unit(front, name, [s.objectives[name] for s in shown]), _label(front, name)]
                 for name in front.objectives},
        "flat": front.flat_objectives(),
        # the metric axis' linear part, as the PNGs frame it: drops reaching ten times that get a symlog axis
        "metric_width": linear_width(metric_scale(front)),
        "layers": list(grid), "sensitivity": {"label": sensitivity[0], "values": sensitivity[1],
                                            "levels": [SENSITIVE_DB, DOUBTFUL_DB]} if sensitivity else None, "chosen": chosen.id if chosen else None, "knee": knee, "pick": pick_rule,
        "solutions": [_point(front, s, grid) for s in front.solutions],
        "references": [_point(front, r, grid) for r in front.references],
    }
    sections = [
        _header(front, directory, settings),
        _front_section(front, figures, pick_rule, chosen),
        _chosen_section(),
        _reproduce_section(directory, settings),
        _layers_section(figures),
        _convergence_section(history, figures),
        _sensitivity_section(sensitivity_table),
    ]
    title = f"qevo: {Path(front.model).name} on {front.target}"
    page = (f"<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            f"<title>{html.escape(title)}</title><style>{(ASSETS / 'report.css').read_text()}</style></head>"
            f"<body><main>{''.join(sections)}</main>"
            f"<script type=\"application/json\" id=\"run-data\">{_script_json(data)}</script>"
            f"<script>{(ASSETS / 'report.js').read_text()}</script></body></html>\n")
    summary = {"policies": len(front.solutions), "chosen": data["chosen"], "knee": knee, "figures": sorted(figures),
               "convergence_rows": len(history), "sensitivity": sensitivity_table is not None}
    return page, summary


def _label(front: Front, name: str) -> str:
    return f"{metric_label(front)} drop" if name == "metric" else name


def _point(front: Front, solution: Solution, grid: dict[str, dict[str, str]]) -> dict[str, Any]:
    """A policy as the page's script sees it: raw values to draw, and the same values as a person reads them."""
    column = str(solution.id) if solution.id is not None else solution.name
    unit = front.metric_unit
    return {"id": solution.id, "name": solution.name, "objectives": solution.objectives,
            "shown": {name: human(name, value, unit) for name, value in solution.objectives.items()},
            "metric": metric_value(solution.metric, unit), "bits": solution.policy.summary(),
            "layers": {layer: cells[column] for layer, cells in grid.items()}}


def _script_json(data: Any) -> str:
    """JSON safe inside a <script> element: no `</script>` or `<!--` in a name can end it early or swallow the
    page's script (the escapes are JSON's own, read back unchanged)."""
    return (json.dumps(data, separators=(",", ":"))
            .replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026"))


def _png_data(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode()


def _figures(front: Front, grid, shown, history, sensitivity, knee) -> dict[str, str]:
    """The PNG figures as data URLs: the front, the layer map, the convergence (when recorded)."""
    figures = {}
    with tempfile.TemporaryDirectory(prefix="qevo-report-") as folder:
        folder = Path(folder)
        if front.solutions:
            figures["front"] = _png_data(save_png(front, folder / "front.png", knee_id=knee))
        if grid and shown:
            figures["layers"] = _png_data(save_layer_map(
                grid, column_titles(front, shown), folder / "layers.png",
                f"weight formats per layer (columns: policy, {metric_label(front)} drop)", sensitivity))
        if history:
            figures["convergence"] = _png_data(save_convergence(history, folder / "convergence.png",
                                                                "hypervolume and front size per generation"))
    return figures


def _img(figures: dict[str, str], name: str, alt: str) -> str:
    if name not in figures:
        return ""
    return f'<img class="figure" id="figure-{name}" alt="{html.escape(alt)}" src="{figures[name]}">'


def _header(front: Front, directory: Path, settings: dict[str, Any]) -> str:
    unit = front.metric_unit
    resolved = settings.get("resolved", {})
    versions = settings.get("versions", {})
    facts = [("model", front.model), ("target", front.target),
             ("metric", f"{metric_label(front)}, fp32 {metric_value(front.fp32_metric, unit)}"),
             ("data", resolved.get("data", "")), ("objectives", ", ".join(front.objectives)),
             ("budgets", ", ".join(f"{k} {v}" for k, v in front.budgets.items()) or "none"),
             ("evaluated", f"{front.evaluated} policies, {len(front.solutions)} on the "
                           f"{'front' if front.feasible else 'list of the closest (none met the budgets)'}"),
             ("hypervolume", f"{front.hypervolume:.4f} (normalised to fp32)"),
             ("run", str(directory)),
             ("versions", ", ".join(f"{k} {v}" for k, v in versions.items()))]
    rows = "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(str(v))}</td></tr>" for k, v in facts if v)
    flat = "".join(f"<p class=\"note\">{html.escape(name)} does not separate these policies on this target: every "
                   f"one within {100 * span:.2g}% ({html.escape(human(name, min(front.values(name))))} to "
                   f"{html.escape(human(name, max(front.values(name))))}); it is not drawn.</p>"
                   for name, span in front.flat_objectives().items())
    made = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return (f"<header><h1>{html.escape(Path(front.model).name)} on {html.escape(front.target)}</h1>"
            f"<p class=\"sub\">qevo search report, written {made}</p></header>"
            f"<section id=\"summary\"><table class=\"facts\">{rows}</table>{flat}</section>")


def _front_section(front: Front, figures: dict[str, str], rule: str, chosen: Solution | None) -> str:
    columns = "".join(f"<th>{html.escape(_label(front, name))}</th>" for name in front.objectives)
    picked = f"The star is the policy <code>{html.escape(rule)}</code> picks." if chosen is not None else \
        ("No policy is picked: none met the run's budgets, and of the closest listed here one is picked by id "
         "(<code>qevo report RUN_DIR --pick ID</code>)." if not front.feasible else "")
    heading = "Pareto front" if front.feasible else "No policy met the budgets: the closest"
    return (f"<section id=\"front\"><h2>{heading}</h2>"
            f"<p>Click a point or a row (or move through the rows with the arrow keys) to see that policy's layers "
            f"and the commands that export it. Grey squares are the references; those beyond the zoomed axes sit "
            f"at the edge and are named under the figure. {picked}</p>"
            f"<div class=\"controls\"><label>axes <select id=\"pair\"></select></label></div>"
            f"<svg id=\"scatter\" viewBox=\"0 0 720 420\" role=\"img\" aria-label=\"Pareto front\"></svg>"
            f"<p id=\"beyond\" class=\"sub\"></p>"
            f"<table id=\"front-table\" class=\"grid\"><thead><tr><th>id</th>{columns}<th>{html.escape(metric_label(front))}"
            f"</th><th>bits</th><th></th></tr></thead><tbody></tbody></table>"
            f"<details><summary>the front as a static figure</summary>"
            f"{_img(figures, 'front', 'the front against the references, one panel per pair of objectives')}"
            f"</details></section>")


def _chosen_section() -> str:
    return ("<section id=\"chosen\"><h2>Selected policy <span id=\"chosen-title\"></span></h2>"
            "<div id=\"chosen-values\"></div><h3>Export it</h3><pre id=\"export-commands\"></pre>"
            "<h3>Its layers</h3><table id=\"chosen-layers\" class=\"grid\"><thead></thead><tbody></tbody></table>"
            "</section>")


def _reproduce_section(directory: Path, settings: dict[str, Any]) -> str:
    values = {k: v for k, v in settings.get("settings", {}).items() if k != "out"}
    if not values:
        return ""
    text = yaml.safe_dump(values, sort_keys=False)
    link = "data:text/yaml;charset=utf-8;base64," + base64.b64encode(text.encode()).decode()
    command = f"qevo search --config settings.yaml --out {shlex.quote(str(directory) + '-again')}"
    timing = (" It stopped on a time limit, so how far a second run gets depends on the machine."
              if values.get("time_limit") else " The same seed and inputs give the same front.")
    return (f"<section id=\"reproduce\"><h2>Reproduce the search</h2>"
            f"<p>Save these settings as <code>settings.yaml</code> (<a download=\"settings.yaml\" href=\"{link}\">"
            f"download</a>) and run the command from the directory the search ran in (paths are kept as they were "
            f"given).{timing}</p>"
            f"<pre id=\"reproduce-command\">{html.escape(command)}</pre>"
            f"<details><summary>settings.yaml</summary><pre id=\"settings-yaml\">{html.escape(text)}</pre></details>"
            f"</section>")


def _layers_section(figures: dict[str, str]) -> str:
    return ("<section id=\"layers\"><h2>Which layer got which format</h2>"
            "<p>Every policy on the front, one column each, the references first; beside it, each layer's "
            "sensitivity (the model's output SQNR with only that layer's weights at the fewest bits).</p>"
            f"{_img(figures, 'layers', 'weight formats per layer and policy')}</section>")


def _convergence_section(history: list[dict], figures: dict[str, str]) -> str:
    if not history:
        return ("<section id=\"convergence\"><h2>Convergence</h2><p class=\"note\">This run records no "
                f"convergence ({NO_CONVERGENCE}).</p></section>")
    rows = [f"<tr><td>{step}</td><td>{row['evaluations']}</td><td>{row['front_size']}</td>"
            f"<td>{row['hypervolume']:.6f}</td><td>{row['elapsed_s']:.1f} s</td></tr>"
            for step, row in convergence_steps(history)]
    return (f"<section id=\"convergence\"><h2>Convergence</h2>"
            f"{_img(figures, 'convergence', 'hypervolume and front size against evaluations and time')}"
            f"<details><summary>per generation</summary><table class=\"grid\" id=\"convergence-table\"><thead><tr>"
            f"<th>step</th><th>evaluations</th><th>front size</th><th>hypervolume</th>"
            f"<th>time</th></tr></thead><tbody>{''.join(rows)}</tbody></table></details></section>")


def _sensitivity_section(table: dict | None) -> str:
    if not table:
        return ("<section id=\"sensitivity\"><h2>Sensitivity</h2><p class=\"note\">No sensitivity table: the "
                "search space was small enough to measure whole, or the run was made by an earlier qevo. "
                "<code>qevo inspect --sensitivity</code> measures one.</p></section>")
    columns = table.get("columns", [])
    measured = table.get("measured", {})
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = []
    for layer, row in table["sqnr_db"].items() if columns else ():
        cells = "".join(_sqnr_cell(row.get(column), column in measured.get(layer, [])) for column in columns)
        body.append(f"<tr><th>{html.escape(layer)}</th>{cells}</tr>")
    layers = (f"<table class=\"grid\" id=\"sensitivity-table\"><thead><tr><th>layer</th>{head}</tr></thead>"
              f"<tbody>{''.join(body)}</tbody></table>") if columns else \
        "<p class=\"note\">No layer column: the run allowed one format on each side of its layers, so the proxy " \
        "probed neither (activations a target costs as tensors are below).</p>"
    tensors = ""
    if table.get("tensors"):
        tensor_columns = table.get("tensor_columns", [])
        rows = "".join(f"<tr><th>{html.escape(tensor)}</th>"
                       + "".join(_sqnr_cell(row.get(c), c in measured.get(f"T:{tensor}", [])) for c in tensor_columns)
                       + "</tr>" for tensor, row in table["tensors"].items())
        tensors = (f"<details><summary>activation tensors ({len(table['tensors'])}), each alone at each format"
                   f"</summary><table class=\"grid\" id=\"tensor-sensitivity\"><thead><tr><th>tensor</th>"
                   + "".join(f"<th>{html.escape(c)}</th>" for c in tensor_columns)
                   + f"</tr></thead><tbody>{rows}</tbody></table></details>")
    return (f"<section id=\"sensitivity\"><h2>Sensitivity</h2><p>The model's output SQNR (dB) with one layer "
            f"quantized at each format, the rest fp32, from the search's proxy on {table.get('subset', '?')} "
            f"samples; lower is more sensitive (shaded red below {SENSITIVE_DB:g} dB, amber below {DOUBTFUL_DB:g}). "
            f"* predicted from the probes "
            f"and the format's quantization noise, others measured."
            f"{'' if table.get('complete', True) else ' The time limit cut the probing short.'}</p>"
            f"{layers}{tensors}</section>")


def _sqnr_cell(value: float | None, measured: bool) -> str:
    """A table cell: the SQNR, marked * when predicted rather than probed; '-' where there is none."""
    if value is None:
        return "<td>-</td>"
    return f"<td class=\"{_sqnr_class(value)}\">{value:.1f}{'' if measured else '*'}</td>"


def _sqnr_class(value: float) -> str:
    return {"sensitive": "bad", "doubtful": "warn"}.get(sensitivity_level(value), "")
