"""Seeing a search: convergence records, the sensitivity beside the layer map, runs compared, readable plots,
and the HTML report opened in a real headless browser. Assertions on the files and the page."""
import json
import os
import shutil
import struct
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from qevo_cli.cli import app
from qevo_cli.config import SearchConfig
from qevo_cli.front import Front
from qevo_cli.layer_map import layer_map
from qevo_cli.pick import pick
from qevo_cli.plot import zoom
from qevo_cli.resume import resume_search
from qevo_cli.search import run_search
from qevo_cli.store import RunStore
from qevo_cli.units import human

runner = CliRunner()
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def _search(root: Path, name: str, stop_after: int | None = None, **settings):
    previous = os.environ.get("QEVO_CACHE_DIR")
    os.environ["QEVO_CACHE_DIR"] = str(root / "cache")
    try:
        config = SearchConfig(out=str(root / name), **{"pop": 16, "generations": 4, "seed": 1, **settings})
        callback = None if stop_after is None else (lambda progress: progress.generation < stop_after)
        run_search(config, callback=callback)
        if stop_after is not None:
            resume_search(root / name)
    finally:
        if previous is not None:
            os.environ["QEVO_CACHE_DIR"] = previous
    return root / name


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A run on arm-neon stopped after two generations and resumed to four, and one on hexagon."""
    root = tmp_path_factory.mktemp("report")
    neon = _search(root, "digits-arm-neon", stop_after=2, target="arm-neon", weight_formats="int2,int4,int8",
                   act_formats="int8,int16")
    hexagon = _search(root, "digits-hexagon", target="hexagon", weight_formats="int2,int4,int8",
                      act_formats="int8,int16")
    return neon, hexagon


def _front(run_dir: Path) -> Front:
    return Front.from_dict(json.loads((run_dir / "front.json").read_text()))


def _png_size(path: Path) -> tuple[int, int]:
    header = path.read_bytes()[:24]
    assert header[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", header[16:24])


def test_convergence_is_recorded_per_generation_and_across_a_resume(runs, tmp_path):
    neon = runs[0]
    store = RunStore(neon, create=False)
    rows = store.convergence()
    store.close()
    assert [r["generation"] for r in rows] == [1, 2, 3, 4]
    assert len({r["process_started"] for r in rows[:2]}) == 1 and rows[2]["process_started"] != rows[1]["process_started"]
    assert all(a["evaluations"] <= b["evaluations"] for a, b in zip(rows, rows[1:]))
    assert all(a["elapsed_s"] <= b["elapsed_s"] for a, b in zip(rows, rows[1:]))   # time goes on across the resume
    front = _front(neon)
    assert rows[-1]["evaluations"] == front.evaluated
    assert rows[-1]["hypervolume"] == pytest.approx(front.hypervolume)
    assert rows[-1]["front_size"] == len(front.solutions)

    shown = runner.invoke(app, ["pareto", "show", str(neon), "--convergence", "--json"])
    assert shown.exit_code == 0, shown.output
    assert json.loads(shown.stdout)["convergence"] == rows
    table = runner.invoke(app, ["pareto", "show", str(neon), "--convergence"])
    assert "(resumed)" in table.stdout and f"{rows[-1]['hypervolume']:.6f}" in table.stdout
    figure = tmp_path / "convergence.png"
    drawn = runner.invoke(app, ["pareto", "show", str(neon), "--convergence-png", str(figure)])
    assert drawn.exit_code == 0, drawn.output
    assert _png_size(figure) == (1100, 400)


def test_a_run_without_convergence_records_says_so(runs, tmp_path):
    copy = tmp_path / "old"
    copy.mkdir()
    for name in ("run.yaml", "front.json"):
        shutil.copy(runs[0] / name, copy / name)
    result = runner.invoke(app, ["pareto", "show", str(copy), "--convergence-png", str(tmp_path / "c.png")])
    assert result.exit_code == 2 and "records no convergence" in result.stderr
    assert not (tmp_path / "c.png").exists()


def test_sensitivity_is_kept_with_the_run_and_shown_beside_the_layer_map(runs, tmp_path):
    neon = runs[0]
    table = json.loads((neon / "sensitivity.json").read_text())
    front = _front(neon)
    from qevo_cli.model import load_model
    layers = [layer.name for layer in load_model(front.model).layers]
    assert list(table["sqnr_db"]) == layers
    # arm-neon quantizes the inputs and outputs of onnxruntime's ops: activations are costed per tensor
    assert table["columns"] == ["W:int2", "W:int4", "W:int8"]
    assert table["tensor_columns"][0] == "A:int8" and table["tensors"]
    assert all(0 < row["A:int8"] <= 100 for row in table["tensors"].values())
    for row in table["sqnr_db"].values():   # fewer bits, more noise: a lower SQNR
        assert row["W:int2"] < row["W:int4"] < row["W:int8"]
    shown = json.loads(runner.invoke(app, ["pareto", "show", str(neon), "--layers", "--json"]).stdout)
    assert shown["sensitivity"]["label"].startswith("SQNR W2")
    assert shown["sensitivity"]["values"] == {layer: row["W:int2"] for layer, row in table["sqnr_db"].items()}
    text = runner.invoke(app, ["pareto", "show", str(neon), "--layers"]).stdout
    assert "SQNR W2 alone (dB)" in text
    with_side = tmp_path / "with.png"
    assert runner.invoke(app, ["pareto", "show", str(neon), "--layers-png", str(with_side)]).exit_code == 0
    (tmp_path / "bare").mkdir()
    for name in ("run.yaml", "front.json"):
        shutil.copy(neon / name, tmp_path / "bare" / name)
    bare = tmp_path / "bare.png"
    assert runner.invoke(app, ["pareto", "show", str(tmp_path / "bare"), "--layers-png", str(bare)]).exit_code == 0
    assert _png_size(with_side)[0] > _png_size(bare)[0]   # the sensitivity panel beside the grid


def test_compare_puts_runs_side_by_side_and_names_the_best_under_a_rule(runs, tmp_path):
    neon, hexagon = runs
    rule = "max-drop=5,min=latency"
    figure = tmp_path / "compare.png"
    result = runner.invoke(app, ["pareto", "compare", str(neon), str(hexagon), "--pick", rule, "--png", str(figure),
                                 "--json"])
    assert result.exit_code == 0, result.output
    compared = json.loads(result.stdout)
    fronts = [_front(neon), _front(hexagon)]
    for run, front in zip(compared["runs"], fronts):
        assert run["target"] == front.target and run["policies"] == len(front.solutions)
        assert run["picked"]["id"] == pick(front, rule).id
    assert "energy: no run searched on it; the fronts are drawn there as they stand" in compared["notes"]
    # hexagon left its flat latency out of its objectives
    assert "latency: digits-hexagon did not search on it; drawn there as it stands" in compared["notes"]
    latencies = {run["label"]: run["picked"]["objectives"]["latency"] for run in compared["runs"]}
    assert compared["best"]["run"] == min(latencies, key=latencies.get)
    width, height = _png_size(figure)
    assert height > 300 and width >= 1000   # the metric against each shared cost, one panel each
    table = runner.invoke(app, ["pareto", "compare", str(neon), str(hexagon), "--pick", rule])
    assert f"least latency under {rule}: {compared['best']['run']}" in " ".join(table.stdout.split())


@pytest.mark.parametrize("arguments, message", [
    (["one"], "expected two or more run directories"),
    (["a", "b", "--png", "x.jpg"], "expected a .png file"),
    (["a", "a"], "is given twice"),
    (["a", "b", "--pick", "median"], "expected knee, weights=..., an id"),
])
def test_compare_refuses_bad_input(runs, arguments, message):
    arguments = [str(runs[0]) if a in ("one", "a") else str(runs[1]) if a == "b" else a for a in arguments]
    result = runner.invoke(app, ["pareto", "compare", *arguments])
    assert result.exit_code == 2 and message in result.stderr


def test_a_rule_that_picks_nothing_on_one_run_is_reported_for_that_run(runs):
    neon, hexagon = runs
    tight = min(s.objectives["size"] for s in _front(neon).solutions)
    assert min(s.objectives["size"] for s in _front(hexagon).solutions) > tight   # hexagon keeps its tensors wider
    result = runner.invoke(app, ["pareto", "compare", str(neon), str(hexagon), "--pick",
                                 f"max-size-mb={tight:.9f},min=metric", "--json"])
    assert result.exit_code == 0, result.output
    by_target = {run["target"]: run for run in json.loads(result.stdout)["runs"]}
    assert by_target["hexagon"]["picked"] is None and "no solution" in by_target["hexagon"]["refusal"]
    assert by_target["arm-neon"]["picked"]["objectives"]["size"] == pytest.approx(tight)


def test_a_run_that_met_no_budget_is_never_the_best(runs, tmp_path):
    """As qevo export refuses a rule on a run whose front lists only the closest policies, so do compare and
    the report: the over-budget policy is not named best, starred, or opened on."""
    over = _search(tmp_path, "over", target="arm-neon", weight_formats="int4,int8", act_formats="int8",
                   max_latency_ms=0.000001, pop=8, generations=1)
    assert not _front(over).feasible
    result = runner.invoke(app, ["pareto", "compare", str(runs[0]), str(over), "--pick", "min=latency", "--json"])
    compared = json.loads(result.stdout)
    assert compared["runs"][1]["picked"] is None and "no policy within its budgets" in compared["runs"][1]["refusal"]
    assert compared["best"] is None or compared["best"]["run"] == compared["runs"][0]["label"]
    summary = json.loads(runner.invoke(app, ["report", str(over), "-o", str(tmp_path / "r.html"), "--json"]).stdout)
    assert summary["chosen"] is None and summary["knee"] is None
    assert "No policy met the budgets" in (tmp_path / "r.html").read_text()
    for command in (["pareto", "compare", str(over), str(runs[0]), "--pick", "median"],
                    ["report", str(over), "-o", str(tmp_path / "bad.html"), "--pick", "median"]):
        bad = runner.invoke(app, command)   # the rule is wrong, whatever the run's budgets
        assert bad.exit_code == 2 and "expected knee, weights=..., an id" in bad.stderr
    assert not (tmp_path / "bad.html").exists()


def test_a_layer_map_cell_names_everything_that_differs_from_the_defaults():
    from qevo_cli.layer_map import cell
    from qevo_cli.policy import LayerChoice, Policy
    policy = Policy({"a": LayerChoice(weight="int4", activation="int8", granularity="per-group-64", symmetric=False,
                                      calibration="percentile", rounding="gptq", bias_correction=True,
                                      weight_range="output-mse"),
                     "b": LayerChoice(weight="int8", activation="int8", granularity="per-tensor", calibration="entropy",
                                      weight_range="mse", sparsity="2:4"),
                     "c": LayerChoice(weight="fp16", activation="fp16", calibration="percentile"),
                     "d": LayerChoice(weight="int8", activation="dynamic-int8")}, prune={"a": 0.25})
    assert cell(policy, "a") == "W4A8 g64 asym pct gbo -25%"
    assert cell(policy, "b") == "W8A8 pt ent ms"
    assert cell(policy, "c") == "W16fA16f"        # a calibration method means nothing to float activations
    assert cell(policy, "d") == "W8A8d"
    assert cell(policy, "missing") == "W32fA32f"


def test_log_axes_label_plain_numbers_and_a_fraction_metric_reads_in_points():
    from qevo_cli.plot import axis_unit, pyplot
    plt = pyplot()
    figure, ax = plt.subplots()
    ax.scatter([0.05, 5.0], [1.0, 2.0])
    zoom([0.05, 5.0], "size").apply(ax, "x", "size (MB)")
    figure.canvas.draw()
    labels = [t.get_text() for t in ax.get_xticklabels() if t.get_text()]
    plt.close(figure)
    assert labels and not any("$" in label for label in labels)   # no mathtext left unparsed
    assert {"0.1", "0.2", "2"} <= set(labels)                       # 1-2-5 steps over under three decades
    front = Front.from_dict({**json.loads(json.dumps(_FRACTION_FRONT))})
    assert axis_unit(front, "metric", []) == (0.01, "cosine drop (points)")


_FRACTION_FRONT = {"version": 1, "model": "m.onnx", "target": "hexagon", "metric": "cosine", "metric_label": "cosine",
                   "metric_unit": "fraction", "objectives": ["metric", "size"], "fp32_metric": 1.0,
                   "references": [], "solutions": []}


def test_axes_zoom_to_the_front():
    assert zoom([1.0, 2.0], "size").scale == "linear"
    framed = zoom([0.01, 5.0], "size")
    assert framed.scale == "log" and framed.limits[0] < 0.01 and framed.limits[1] > 5.0
    drops = zoom([0.0, 0.5, 60.0], "metric", metric_scale=98.0)
    assert drops.scale == "symlog" and drops.linear_width == pytest.approx(0.98)
    assert zoom([0.0, 0.5, 3.0], "metric", metric_scale=98.0).scale == "linear"
    alone = zoom([-0.111], "metric", metric_scale=98.0)   # a front of one policy: a readable frame around it
    assert alone.limits[1] - alone.limits[0] > 5
    better = zoom([-60.0, -30.0], "metric", metric_scale=98.0)   # every policy beats fp32 on this split
    assert better.contains(-60.0) and better.contains(-30.0)
    worse = zoom([20.0, 60.0], "metric", metric_scale=98.0)
    assert worse.contains(20.0) and worse.contains(60.0)


def test_a_flat_objective_is_named_not_drawn(tmp_path):
    """On hexagon the digits model's latency is the same for every policy: asked for, it is reported, and the
    plot has one panel (metric against size) instead of three."""
    run = _search(tmp_path, "flat", target="hexagon", weight_formats="int4,int8", act_formats="int8",
                  objectives="metric,size,latency", pop=8, generations=2)
    front = _front(run)
    assert "latency" in front.flat_objectives()
    figure = tmp_path / "front.png"
    assert runner.invoke(app, ["pareto", "show", str(run), "--plot", str(figure)]).exit_code == 0
    assert _png_size(figure)[0] == 500


def test_the_front_recovery_records_its_batches_once_however_often_it_runs(tmp_path):
    run = _search(tmp_path, "recovered", target="arm-neon", weight_formats="int2,int4,int8", act_formats="int8",
                  recover_front=True, pop=8, generations=2)
    store = RunStore(run, create=False)
    first = store.convergence()
    # a row the stopped process left past the batches the resumed one will make
    store.record_convergence("recovery", 99, 1, 0.5, 1.0, 0.0)
    store.close()
    resume_search(run)   # a finished run resumed: the recovery runs again from its first batch
    rows = RunStore(run, create=False).convergence()
    batches = [r["generation"] for r in rows if r["phase"] == "recovery"]
    assert batches == list(range(1, len(batches) + 1)) and batches
    assert [r["phase"] for r in rows] == ["search"] * (len(rows) - len(batches)) + ["recovery"] * len(batches)
    assert all(a["evaluations"] <= b["evaluations"] for a, b in zip(rows, rows[1:]))
    assert rows[:2] == first[:2]   # the evolution's rows are the first process's
    text = runner.invoke(app, ["pareto", "show", str(run), "--convergence"]).stdout
    assert "recovery batch 1" in text and "generation 2" in text


def test_a_side_with_one_format_has_no_sensitivity_column(tmp_path):
    """With one weight format the search probes no weights: the table must not show them as 100 dB."""
    run = _search(tmp_path, "one-weight", target="arm-neon", weight_formats="int8", act_formats="int8,int16",
                  pop=8, generations=1)
    table = json.loads((run / "sensitivity.json").read_text())
    assert table["columns"] == [] and table["tensors"]
    shown = json.loads(runner.invoke(app, ["pareto", "show", str(run), "--layers", "--json"]).stdout)
    assert shown["sensitivity"] is None


@pytest.mark.parametrize("damage, field", [
    ('{"columns": ["W:intx"], "sqnr_db": {}}', "columns"),
    ('{"columns": ["W:int2"], "sqnr_db": {"stem": {"W:int2": "low"}}}', "sqnr_db.stem"),
    ('{"columns": [], "sqnr_db": {}, "measured": []}', "measured"),
    ('{"columns": 5, "sqnr_db": {}}', "columns"),
    ("{not json", ""),
])
def test_a_damaged_sensitivity_table_is_named_not_a_traceback(runs, tmp_path, damage, field):
    copy = tmp_path / "damaged"
    shutil.copytree(runs[0], copy)
    (copy / "sensitivity.json").write_text(damage)
    for command in (["pareto", "show", str(copy), "--layers"], ["report", str(copy), "-o", str(tmp_path / "r.html")]):
        result = runner.invoke(app, command)
        assert result.exit_code == 2, result.output
        assert "sensitivity.json" in result.stderr and field in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "r.html").exists()


def test_the_sensitivity_section_marks_predictions_and_gaps():
    from qevo_cli.report import _sensitivity_section
    page = _sensitivity_section({"columns": [], "sqnr_db": {"conv": {}}, "measured": {"T:x": ["A:int8"]},
                                 "tensor_columns": ["A:int8", "A:int16"],
                                 "tensors": {"x": {"A:int8": 30.0, "A:int16": 60.0}, "y": {"A:int8": 25.0}}})
    assert ">30.0</td>" in page and ">60.0*</td>" in page   # probed at int8; int16 predicted
    assert ">25.0*</td><td>-</td>" in page                  # y: no probe of its own, no int16 value
    assert "No layer column" in page and "sensitivity-table" not in page


def test_a_damaged_run_yaml_is_named(runs, tmp_path):
    copy = tmp_path / "damaged"
    shutil.copytree(runs[0], copy)
    text = (copy / "run.yaml").read_text()
    (copy / "run.yaml").write_text(text + "versions: x\n" if "versions:" not in text else
                                   text.replace("versions:", "versions: x\nold_versions:", 1))
    result = runner.invoke(app, ["report", str(copy), "-o", str(tmp_path / "r.html")])
    assert result.exit_code == 2 and "run.yaml" in result.stderr and "versions" in result.stderr


def test_a_damaged_store_is_named_and_a_path_with_hash_signs_is_read(runs, tmp_path):
    odd = tmp_path / "run #1?%"
    shutil.copytree(runs[0], odd)
    shown = json.loads(runner.invoke(app, ["pareto", "show", str(odd), "--convergence", "--json"]).stdout)
    assert [r["generation"] for r in shown["convergence"]] == [1, 2, 3, 4]
    (odd / "evaluations.sqlite").write_bytes(b"not a database" * 100)
    for suffix in ("-wal", "-shm"):
        (odd / f"evaluations.sqlite{suffix}").unlink(missing_ok=True)
    result = runner.invoke(app, ["report", str(odd), "-o", str(tmp_path / "r.html")])
    assert result.exit_code == 2 and "evaluations.sqlite" in result.stderr
    assert not (tmp_path / "r.html").exists()


def test_report_is_one_self_contained_file(runs, tmp_path):
    page = tmp_path / "report.html"
    result = runner.invoke(app, ["report", str(runs[0]), "-o", str(page), "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["figures"] == ["convergence", "front", "layers"] and summary["sensitivity"]
    text = page.read_text()
    for reference in ('src="http', "src='http", 'href="http', "url(http", "<link"):
        assert reference not in text
    assert text.count('src="data:image/png;base64,') == 3
    bad = runner.invoke(app, ["report", str(runs[0]), "-o", str(tmp_path / "report.pdf")])
    assert bad.exit_code == 2 and "expected an .html file" in bad.stderr and not (tmp_path / "report.pdf").exists()


@pytest.fixture(scope="module")
def browser():
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        sync_playwright = None
    if sync_playwright is None or CHROMIUM is None:
        if os.environ.get("QEVO_REQUIRE_BROWSER"):
            pytest.fail("QEVO_REQUIRE_BROWSER is set but playwright or Debian's chromium is missing")
        pytest.skip("needs playwright and a chromium (apt-get install chromium)")
    with sync_playwright() as playwright:
        instance = playwright.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", "--no-first-run"])
        yield instance
        instance.close()


def test_report_in_a_headless_browser(runs, browser, tmp_path):
    run_dir = runs[0]
    page_file = tmp_path / "report.html"
    assert runner.invoke(app, ["report", str(run_dir), "-o", str(page_file)]).exit_code == 0
    front = _front(run_dir)
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    problems, requests = [], []
    page.on("console", lambda message: problems.append(message.text) if message.type in ("error", "warning")
            else None)
    page.on("pageerror", lambda error: problems.append(str(error)))
    page.on("request", lambda request: requests.append(request.url))
    page.route("http*://**", lambda route: route.abort())   # nothing may come from a network
    page.goto(page_file.as_uri())
    page.wait_for_selector("body[data-ready=true]", timeout=10_000)
    assert problems == []
    assert all(url.startswith(("file:", "data:")) for url in requests), requests

    # every figure decoded and drawn
    sizes = page.eval_on_selector_all("img.figure", "imgs => imgs.map(i => [i.id, i.complete, i.naturalWidth])")
    assert sorted(s[0] for s in sizes) == ["figure-convergence", "figure-front", "figure-layers"]
    assert all(complete and width > 300 for _, complete, width in sizes)

    # the scatter and the table hold the front's policies, with front.json's numbers
    assert page.locator("#scatter circle.point").count() == len(front.solutions)
    ids = page.eval_on_selector_all("#front-table tbody tr[data-id]", "rows => rows.map(r => Number(r.dataset.id))")
    assert sorted(ids) == sorted(s.id for s in front.solutions)
    unit = front.metric_unit
    for solution in front.solutions:
        cells = page.locator(f"#front-table tbody tr[data-id='{solution.id}'] td").all_inner_texts()
        assert cells[1:1 + len(front.objectives)] == [human(n, solution.objectives[n], unit) for n in front.objectives]

    # it opens on the knee; clicking another point selects that policy, with its layers and export commands
    knee = pick(front, "knee")
    assert page.inner_text("#chosen-title").startswith(f"#{knee.id}")
    on_top = page.eval_on_selector_all("#scatter circle.point", """dots => dots.filter(d => {
        const box = d.getBoundingClientRect();
        return document.elementFromPoint(box.x + box.width / 2, box.y + box.height / 2) === d;
    }).map(d => Number(d.dataset.id))""")   # points another one does not cover
    other = next(s for s in front.solutions if s.id != knee.id and s.id in on_top)
    page.click(f"#scatter circle.point[data-id='{other.id}']")
    assert page.inner_text("#chosen-title").startswith(f"#{other.id}")
    grid = layer_map(front.model, front.solutions)
    rows = page.locator("#chosen-layers tbody tr")
    assert rows.count() == len(grid)
    for index, (layer, cells) in enumerate(grid.items()):
        row = rows.nth(index).locator("td").all_inner_texts()
        assert row[0] == layer and row[-1] == cells[str(other.id)]
    assert f"--pick {other.id}" in page.inner_text("#export-commands")
    assert page.locator("#front-table tbody tr.selected").get_attribute("data-id") == str(other.id)

    # another pair of axes redraws the same policies where that pair puts them
    options = page.locator("#pair option").count()
    assert options == 3   # metric, size, latency taken two at a time
    positions = "dots => dots.map(d => [d.getAttribute('cx'), d.getAttribute('cy')])"
    before = page.eval_on_selector_all("#scatter circle.point", positions)
    labels = page.text_content("#x-label"), page.text_content("#y-label")
    page.select_option("#pair", "2")
    assert page.locator("#scatter circle.point").count() == len(front.solutions)
    assert (page.text_content("#x-label"), page.text_content("#y-label")) != labels
    assert page.text_content("#x-label").startswith("size") and page.text_content("#y-label").startswith("latency")
    assert page.eval_on_selector_all("#scatter circle.point", positions) != before
    assert page.locator(f"#scatter circle.point[data-id='{other.id}']").get_attribute("class") == "point selected"

    # the keyboard: a focused row selects with Enter, the arrow keys move to the next policy
    rows_in_order = page.eval_on_selector_all("#front-table tbody tr[data-id]", "rows => rows.map(r => r.dataset.id)")
    page.focus(f"#front-table tbody tr[data-id='{rows_in_order[0]}']")
    page.keyboard.press("Enter")
    assert page.inner_text("#chosen-title").startswith(f"#{rows_in_order[0]}")
    page.keyboard.press("ArrowDown")
    assert page.inner_text("#chosen-title").startswith(f"#{rows_in_order[1]}")

    # the settings shown reproduce the run
    settings = yaml.safe_load(page.locator("#settings-yaml").text_content())
    config = SearchConfig.from_mapping(settings)
    assert config.target == "arm-neon" and config.seed == 1 and list(config.weight_formats) == ["int2", "int4", "int8"]
    assert page.locator("#sensitivity-table tbody tr").count() == len(grid)
    assert problems == []
    page.close()


def test_report_with_names_that_look_like_html(browser, tmp_path):
    """Layer names are the model's node names: ones holding </script>, <!--, & and $ must show as text and
    leave the page's script running."""
    import onnx

    from qevo_cli.defaults import DEFAULT_CALIB, DEFAULT_DATA, DEFAULT_MODEL
    from qevo_cli.model import load_model
    model = onnx.load(DEFAULT_MODEL)
    for node in model.graph.node:
        node.name = f"<!--{node.name}</script><script>window.bad=1</script>&amp; $\\frac{{$"
    path = tmp_path / "hostile.onnx"
    onnx.save(model, path)
    run = _search(tmp_path, "hostile", model=str(path), data=str(DEFAULT_DATA), calib=str(DEFAULT_CALIB),
                  target="arm-neon",
                  weight_formats="int4,int8", act_formats="int8", pop=8, generations=1)
    page_file = tmp_path / "hostile.html"
    assert runner.invoke(app, ["report", str(run), "-o", str(page_file)]).exit_code == 0
    page = browser.new_page()
    problems = []
    page.on("pageerror", lambda error: problems.append(str(error)))
    page.on("console", lambda message: problems.append(message.text) if message.type == "error" else None)
    page.goto(page_file.as_uri())
    page.wait_for_selector("body[data-ready=true]", timeout=10_000)
    assert problems == [] and page.evaluate("window.bad") is None
    names = [layer.name for layer in load_model(path).layers]
    shown = page.locator("#chosen-layers tbody tr td:first-child").all_inner_texts()
    assert shown == names
    page.close()


def test_report_when_one_objective_alone_separates_the_policies(browser, tmp_path):
    """Hexagon costs every digits policy the same latency: asked for metric and latency, the page draws the
    metric against the policies' order, labelled with their ids, and names the references under it."""
    run = _search(tmp_path, "flat", target="hexagon", weight_formats="int4,int8", act_formats="int8",
                  objectives="metric,latency", pop=8, generations=2)
    front = _front(run)
    assert "latency" in front.flat_objectives()
    page_file = tmp_path / "flat.html"
    assert runner.invoke(app, ["report", str(run), "-o", str(page_file)]).exit_code == 0
    page = browser.new_page()
    page.goto(page_file.as_uri())
    page.wait_for_selector("body[data-ready=true]", timeout=10_000)
    assert page.locator("#pair option").count() == 1
    assert page.locator("#scatter circle.point").count() == len(front.solutions)
    ticks = page.eval_on_selector_all("#scatter text", "texts => texts.map(t => t.textContent)")
    assert {f"#{s.id}" for s in front.solutions} <= set(ticks)
    assert "fp32" in page.inner_text("#beyond") and "not drawn" in page.inner_text("#beyond")
    page.close()
