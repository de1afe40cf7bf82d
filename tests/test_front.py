"""The front and the files around it: non-domination, the closest policies, hypervolume, the shape check of
front.json, flat objectives, atomic writes and finding runs."""
import json
import os
import time

import pytest

from qevo_cli.errors import QevoError
from qevo_cli.front import Front, HypervolumeScale, closest, non_dominated, relative_span


def _row(metric, size, violation=0.0, row_id=0):
    return {"id": row_id, "objectives": {"metric": metric, "size": size}, "violation": violation}


def test_non_dominated_keeps_the_first_front_and_only_feasible_rows():
    rows = [_row(0.0, 10.0, row_id=1), _row(1.0, 5.0, row_id=2), _row(2.0, 6.0, row_id=3),   # 3 is dominated by 2
            _row(5.0, 1.0, row_id=4), _row(0.0, 0.5, violation=2.0, row_id=5),                 # 5 misses a budget
            _row(1.0, 5.0, row_id=6)]                                                          # a tie with 2
    kept = [row["id"] for row in non_dominated(rows, ["metric", "size"])]
    assert sorted(kept) == [1, 2, 4]   # the tie keeps the first evaluated


def test_closest_orders_by_violation():
    rows = [_row(0, 1, violation=v, row_id=i) for i, v in enumerate([3.0, 0.5, 2.0, 0.1])]
    assert [row["id"] for row in closest(rows, count=2)] == [3, 1]


def test_hypervolume_grows_when_a_point_is_added_and_is_scaled_by_fp32():
    scale = HypervolumeScale(["metric", "size"], {"size": 10.0}, fp32_metric=50.0)
    one = scale([_row(5.0, 5.0)])            # (0.1, 0.5) against the reference point (1.1, 1.1)
    assert one == pytest.approx((1.1 - 0.1) * (1.1 - 0.5))
    assert scale([_row(5.0, 5.0), _row(25.0, 1.0)]) > one
    assert scale([]) == 0.0


def test_relative_span_and_flat_objectives():
    assert relative_span([10.0, 9.95]) == pytest.approx(0.005)
    assert relative_span([]) == 0.0
    front = _front()
    front["objectives"] = ["metric", "size", "latency"]
    front["solutions"] = [{"id": i, "objectives": {"metric": 0.1 * i, "size": 10.0 - i, "latency": 3.0}, "metric": 1.0,
                           "policy": {"version": 1, "layers": {}}} for i in range(3)]
    front["references"] = []
    assert Front.from_dict(front).flat_objectives() == {"latency": 0.0}


def _front():
    policy = {"version": 1, "layers": {"fc": {"weight": "int8"}}}
    return {"version": 1, "model": "m.onnx", "target": "arm-neon", "metric": "accuracy", "fp32_metric": 98.0,
            "objectives": ["metric", "size"],
            "references": [{"name": "fp32", "objectives": {"metric": 0.0, "size": 2.0}, "metric": 98.0,
                            "policy": {"version": 1, "layers": {}}}],
            "solutions": [{"id": 3, "objectives": {"metric": 0.5, "size": 1.0}, "metric": 97.5, "policy": policy}]}


@pytest.mark.parametrize("change, field", [
    (lambda f: f.update(version=True), "version"),
    (lambda f: f.update(objectives=["metric", "speed"]), "objectives"),
    (lambda f: f.update(fp32_metric=float("nan")), "fp32_metric"),
    (lambda f: f["solutions"][0].update(id="3"), "solutions[0].id"),
    (lambda f: f["solutions"][0]["objectives"].pop("size"), "solutions[0].objectives"),
    (lambda f: f["solutions"][0]["policy"]["layers"]["fc"].update(weight="int9"), "solutions[0].policy.layers.fc"),
    (lambda f: f["references"][0].pop("policy"), "references[0].policy"),
    (lambda f: f["solutions"][0].update(violation="far"), "solutions[0].violation"),
    (lambda f: f.update(feasible="yes"), "feasible"),
    (lambda f: f.update(evaluated="many"), "evaluated"),
    (lambda f: f.update(hypervolume=None), "hypervolume"),
    (lambda f: f.update(metric_label=3), "metric_label"),
])
def test_a_front_read_names_the_first_field_that_is_wrong(change, field):
    front = Front.from_dict(_front(), "f.json")
    assert front.solutions[0].id == 3 and front.solutions[0].policy.choice("fc").weight == "int8"
    assert front.references[0].name == "fp32" and front.references[0].id is None
    written = front.to_dict()
    assert Front.from_dict(written) == front and written["solutions"][0]["policy"]["layers"]["fc"]["weight"] == "int8"
    broken = _front()
    change(broken)
    with pytest.raises(QevoError) as error:
        Front.from_dict(broken, "f.json")
    assert str(error.value).startswith(f"f.json: {field}")


def test_atomic_writes_keep_the_mode_and_clear_temporaries_of_dead_processes(tmp_path):
    from qevo_cli.files import atomic_write_text, read_text, temporary_beside

    target = tmp_path / "front.json"
    atomic_write_text(target, "first")
    os.chmod(target, 0o640)
    atomic_write_text(target, "second")
    assert read_text(target, "a front") == "second" and (os.stat(target).st_mode & 0o777) == 0o640
    # a temporary of a process that no longer exists (SIGKILL leaves it), and one of a running process
    dead = tmp_path / f".front.json.{2 ** 22 + 12345}.abc.tmp"
    alive = tmp_path / f".front.json.{os.getpid()}.def.tmp"
    dead.write_text("x")
    alive.write_text("y")
    fresh = temporary_beside(target)
    assert not dead.exists() and alive.exists() and os.path.exists(fresh)
    (tmp_path / "bad.txt").write_bytes(b"caf\xe9")
    with pytest.raises(QevoError, match="bad.txt: not UTF-8 text"):
        read_text(tmp_path / "bad.txt", "a policy")


def test_the_most_recent_run_is_the_one_whose_front_was_written_last(tmp_path):
    from qevo_cli.runs import latest_run

    with pytest.raises(QevoError, match="no runs found"):
        latest_run(tmp_path / "qevo-runs")
    for name in ("b", "a"):
        (tmp_path / "qevo-runs" / name).mkdir(parents=True)
        (tmp_path / "qevo-runs" / name / "front.json").write_text(json.dumps(_front()))
        time.sleep(0.01)
    os.utime(tmp_path / "qevo-runs" / "b" / "front.json", (time.time() + 5, time.time() + 5))
    assert latest_run(tmp_path / "qevo-runs").name == "b"


def test_the_terminal_plot_places_every_solution(tmp_path):
    from qevo_cli.plot import terminal_plot

    front = _front()
    front["solutions"] = [{"id": i, "objectives": {"metric": float(i), "size": 4.0 - i}, "metric": 98.0 - i,
                           "policy": {"version": 1, "layers": {}}} for i in range(4)]
    front["metric_unit"] = "%"
    lines = terminal_plot(Front.from_dict(front), "size", "metric", width=40, knee_id=2)
    grid = [line.split("|", 1)[1] for line in lines if "|" in line]
    assert len(grid) == 14 and all(len(row) == 40 for row in grid)
    assert sum(row.count("*") for row in grid) == 3 and sum(row.count("F") for row in grid) == 1
    # the knee (size 2 of 1..4, drop 2 of 0..3): a third of the way across, 9 of 13 rows up
    knee_row = next(i for i, row in enumerate(grid) if "K" in row)
    assert knee_row == 13 - round(2 / 3 * 13) and grid[knee_row].index("K") == round(1 / 3 * 39)
