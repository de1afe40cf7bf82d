"""Every command answers a mistake with exit 2, one line naming the file and the problem, no
traceback, and writes nothing (exit 3 and 4 keep their meanings elsewhere)."""
import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

import tiny_models
from qevo_cli.cli import app
from qevo_cli.defaults import DEFAULT_MODEL
from qevo_cli.policy import LayerChoice, Policy

runner = CliRunner()


def _write(path, content):
    path.write_bytes(content)
    return path


def _data(path, **arrays):
    np.savez(path, **arrays)
    return path


def _images(n=8, dtype=np.float32, shape=(1, 8, 8)):
    return np.random.default_rng(0).random((n, *shape)).astype(dtype)


def _nan():
    images = _images()
    images[1, 0, 3, 3] = np.inf
    return images


def _external_data_gone(path):
    import onnx

    onnx.save(onnx.load(DEFAULT_MODEL), path, save_as_external_data=True, location="ext.bin", size_threshold=0)
    (path.parent / "ext.bin").unlink()
    return path


def _latin1(path, text):
    path.write_bytes(text.encode("latin-1"))
    return path


def _damaged_front(run, tmp, change):
    """A copy of a finished run whose front.json is changed by `change(front)`."""
    import json
    import shutil

    copy = tmp / "damaged"
    shutil.copytree(run, copy)
    front = json.loads((copy / "front.json").read_text())
    change(front)
    (copy / "front.json").write_text(json.dumps(front))
    return copy


def _profile(path, text):
    path.write_text(text)
    return path


def _run_dir_file(t):
    (t / "afile").write_text("x")
    return t / "afile"


# (what is wrong, how to make it, the message's key words)
MODELS = {
    "missing model": (lambda t: t / "nope.onnx", "model file not found"),
    "empty model": (lambda t: _write(t / "e.onnx", b""), "model file is empty"),
    "not onnx": (lambda t: _write(t / "x.onnx", b"plain text, not a model\n" * 30), "not an ONNX model"),
    "truncated onnx": (lambda t: _write(t / "t.onnx", DEFAULT_MODEL.read_bytes()[:4000]), "truncated"),
    "missing external data": (lambda t: _external_data_gone(t / "ext.onnx"), "cannot read external weight data"),
    "no quantizable layer": (lambda t: tiny_models.save(tiny_models.no_quantizable_layer(), t / "r.onnx"),
                             "no quantizable layer"),
}
DATA = {
    "data missing an input": (lambda t: _data(t / "d.npz", labels=np.zeros(8)), "missing model input 'image'"),
    "data with another key": (lambda t: _data(t / "d.npz", pixels=_images()), "key 'pixels' is not a model input"),
    "wrong dtype": (lambda t: _data(t / "d.npz", image=_images(dtype=np.float64)), "dtype float64, expected float32"),
    "wrong shape": (lambda t: _data(t / "d.npz", image=_images(shape=(1, 8, 9))), "axis 3 must be 8"),
    "inf in data": (lambda t: _data(t / "d.npz", image=_nan(), labels=np.zeros(8, np.int64)), "NaN or Inf"),
    "no labels for accuracy": (lambda t: _data(t / "d.npz", image=_images()), "needs labels"),
    "label count": (lambda t: _data(t / "d.npz", image=_images(), labels=np.zeros(5, np.int64)),
                    "5 labels for 8 samples"),
    "not npz": (lambda t: _write(t / "d.npz", b"garbage"), "not a readable .npz"),
    "one label for all": (lambda t: _data(t / "d.npz", image=_images(), labels=np.array(3)),
                          "labels: a single value, expected one label per sample"),
    "2-D labels for accuracy": (lambda t: _data(t / "d.npz", image=_images(), labels=np.zeros((8, 2), np.int64)),
                                "labels: shape [8, 2], expected one class index per sample"),
    "string labels": (lambda t: _data(t / "d.npz", image=_images(), labels=np.array(["cat"] * 8)),
                      "expected integer class indices"),
    "fractional labels": (lambda t: _data(t / "d.npz", image=_images(), labels=np.full(8, 0.5)),
                          "expected integer class indices"),
    "labels out of range": (lambda t: _data(t / "d.npz", image=_images(), labels=np.full(8, 10)),
                            "class indices from 10 to 10, expected 0 to 9"),
}
COMMANDS = {
    "inspect": lambda model, data: ["inspect", model, "--sensitivity", "--metric", "accuracy"]
    + (["--data", data] if data else []),
    "evaluate": lambda model, data: ["evaluate", model, "--policy", "{policy}", "--metric", "accuracy"]
    + (["--data", data] if data else []),
    "search": lambda model, data: ["search", model, "--target", "arm-neon", "--generations", "1", "--out", "{out}",
                                   "--metric", "accuracy"] + (["--data", data] if data else []),
}


def _check(result, expected, tmp_path, before):
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert expected in lines[0], lines[0]
    assert result.stdout == ""
    assert {p.name for p in tmp_path.iterdir()} == before, "a failed command left files behind"


def _invoke(tmp_path, args):
    policy = tmp_path / "policy.yaml"
    policy.write_text(Policy({"fc": LayerChoice()}).dumps())
    before = {p.name for p in tmp_path.iterdir()}
    args = [str(a).replace("{policy}", str(policy)).replace("{out}", str(tmp_path / "run")) for a in args]
    return runner.invoke(app, args), before


@pytest.mark.parametrize("command", list(COMMANDS))
@pytest.mark.parametrize("case", list(MODELS))
def test_bad_model_file(tmp_path, command, case):
    make, expected = MODELS[case]
    model = make(tmp_path)
    result, before = _invoke(tmp_path, COMMANDS[command](model, tmp_path / "unused.npz"))
    _check(result, expected, tmp_path, before)
    assert str(model) in result.stderr


@pytest.mark.parametrize("command", list(COMMANDS))
@pytest.mark.parametrize("case", list(DATA))
def test_bad_data_file(tmp_path, command, case):
    make, expected = DATA[case]
    data = make(tmp_path)
    result, before = _invoke(tmp_path, COMMANDS[command](DEFAULT_MODEL, data))
    _check(result, expected, tmp_path, before)
    assert str(data) in result.stderr


GOOD_PROFILE = None


def _broken_profile(tmp_path):
    from qevo_cli.profiles import load_profile
    text = load_profile("arm-neon").dumps().replace("bandwidth: 2.49 GB/s", "bandwidth: -1 GB/s")
    return _profile(tmp_path / "broken.yaml", text)


OTHER = {
    "unknown target (search)": (lambda t: ["search", "--target", "tpu-v9", "--out", t / "run"], "unknown profile 'tpu-v9'"),
    "unknown target (inspect)": (lambda t: ["inspect", "--target", "tpu-v9"], "unknown profile 'tpu-v9'"),
    "unknown target (profiles show)": (lambda t: ["profiles", "show", "tpu-v9"], "unknown profile 'tpu-v9'"),
    "malformed profile": (lambda t: ["search", "--target", _profile(t / "p.yaml", "name: [x\n"), "--out", t / "run"],
                          "p.yaml"),
    "profile with a bad value": (lambda t: ["profiles", "show", _broken_profile(t)], "memory.bandwidth"),
    "malformed config": (lambda t: ["search", "--config", _profile(t / "c.yaml", "pop: [\n")], "not valid YAML"),
    "unknown config key": (lambda t: ["search", "--config", _profile(t / "c.yaml", "target: hexagon\npopulation: 8\n")],
                           "unknown key 'population'; did you mean 'pop'?"),
    "unwritable run folder": (lambda t: ["search", "--target", "arm-neon", "--out", _run_dir_file(t) / "run"],
                              "cannot write the run directory"),
    "unwritable export": (lambda t: ["export", "{rundir}", _run_dir_file(t) / "sub" / "p.yaml"], "cannot write"),
    "unwritable plot": (lambda t: ["pareto", "show", "{rundir}", "--plot", _run_dir_file(t) / "sub" / "f.png"],
                        "cannot write"),
    "run directory that is not one (show)": (lambda t: ["pareto", "show", t], "not a qevo run directory"),
    "run directory that is not one (export)": (lambda t: ["export", t, t / "p.yaml"], "not a qevo run directory"),
    "run directory that is not one (resume)": (lambda t: ["search", "--resume", t], "not a qevo run directory"),
    "policy for another model": (lambda t: ["evaluate", "--policy", _profile(
        t / "other.yaml", yaml.safe_dump({"version": 1, "layers": {"encoder.0": {"weight": "int8"}}}))],
        "policy names layer 'encoder.0'"),
    "config not UTF-8": (lambda t: ["search", "--config", _latin1(t / "c.yaml", "target: arm-neon\nout: caf\xe9\n")],
                         "c.yaml: not UTF-8 text"),
    "policy not UTF-8": (lambda t: ["evaluate", "--policy", _latin1(t / "p.yaml", "version: 1\nlayers: {}\n# \xe9\n")],
                         "p.yaml: not UTF-8 text"),
    "run folder name too long": (lambda t: ["search", "--target", "arm-neon", "--out", t / ("r" * 300)],
                                 "cannot use this run directory"),
    "front without a policy": (lambda t: ["pareto", "show", "{damaged:solutions.0.policy}"],
                               "solutions[0].policy: missing"),
    "front of another version": (lambda t: ["export", "{damaged:version}", t / "p.yaml"], "version: got 99, expected 1"),
    "front whose solutions are text": (lambda t: ["pareto", "show", "{damaged:solutions}"],
                                       "solutions: got str, expected a list"),
    "front with a text objective": (lambda t: ["export", "{damaged:solutions.0.objectives}", t / "p.yaml"],
                                    "solutions[0].objectives: got"),
    "option of the wrong type": (lambda t: ["search", "--target", "arm-neon", "--pop", "many"],
                                 "error: qevo search: Invalid value for '--pop'"),
    "unknown option": (lambda t: ["export", "{rundir}", t / "p.yaml", "--target", "tpu-v9"],
                       "error: qevo export: No such option: --target"),
    "config key given twice": (lambda t: ["search", "--config", _profile(t / "c.yaml", "target: arm-neon\npop: 8\npop: 9\n")],
                               "c.yaml: not valid YAML at line 3, column 1 (duplicate key 'pop')"),
    "policy layer named twice": (lambda t: ["evaluate", "--policy", _profile(
        t / "p.yaml", "version: 1\nlayers:\n  fc: {weight: int8}\n  fc: {weight: int4}\n")], "duplicate key 'fc'"),
    "policy layer named twice (JSON)": (lambda t: ["evaluate", "--policy", _profile(
        t / "p.json", '{"version": 1, "layers": {"fc": {"weight": "int8"}, "fc": {}}}')], "duplicate key 'fc'"),
    "policy version true": (lambda t: ["evaluate", "--policy", _profile(t / "p.yaml", "version: true\nlayers: {}\n")],
                            "version: got True, expected 1"),
    "pick weights that are not numbers": (lambda t: ["export", "{rundir}", t / "p.yaml", "--pick", "weights=nan,1,1,1"],
                                          "non-negative weights"),
    "pick limit that is not a number": (lambda t: ["export", "{rundir}", t / "p.yaml", "--pick",
                                                   "max-drop=nan,min=size"], "max-drop=nan: expected a finite number"),
    "plot that is not a png": (lambda t: ["pareto", "show", "{rundir}", "--plot", t / "front.txt"],
                               "--plot: got .txt, expected a .png file"),
    "implausible profile throughput": (lambda t: ["profiles", "show", _profile(t / "slow.yaml", __import__(
        "qevo_cli.profiles").profiles.load_profile("arm-neon").dumps().replace("throughput: 11.2 GMAC/s", "throughput: 1e-300 MAC/s"))],
        "expected a throughput in MAC/s (1 MAC = 2 ops) between 1 kMAC/s"),
    "bad fit measurements": (lambda t: ["profiles", "fit", _profile(t / "m.csv", "a,b\n1,2\n"), "--base", "hexagon",
                                        "-o", t / "fitted.yaml"], "m.csv"),
}


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    from qevo_cli.config import SearchConfig
    from qevo_cli.search import run_search
    root = tmp_path_factory.mktemp("finished")
    return run_search(SearchConfig(target="arm-neon", weight_formats="int4,int8", act_formats="int8", pop=8,
                                   generations=1, out=str(root / "run"))).run_dir


DAMAGE = {"solutions.0.policy": lambda f: f["solutions"][0].pop("policy"),
          "version": lambda f: f.update(version=99),
          "solutions": lambda f: f.update(solutions="none"),
          "solutions.0.objectives": lambda f: f["solutions"][0]["objectives"].update(size="small")}


def _damage(run, tmp, what):
    return str(_damaged_front(run, tmp, DAMAGE[what]))


@pytest.mark.parametrize("case", list(OTHER))
def test_other_mistakes(tmp_path, case, finished_run):
    make, expected = OTHER[case]
    args = [str(a).replace("{rundir}", str(finished_run)) for a in make(tmp_path)]
    args = [_damage(finished_run, tmp_path, a[9:-1]) if a.startswith("{damaged:") else a for a in args]
    before = {p.name for p in tmp_path.iterdir()}
    result = runner.invoke(app, args)
    _check(result, expected, tmp_path, before)
