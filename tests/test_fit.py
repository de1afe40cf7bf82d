"""Fitting a profile to measured layer latencies, through the library and the CLI."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from qevo_cli.cli.profiles import app
from qevo_cli.errors import QevoError
from qevo_cli.fit import Measurement, fit_profile, predict, profile_name, read_measurements, run_fit
from qevo_cli.profiles import load_profile, profile_from_dict, read_profile

runner = CliRunner()
COLUMNS = ["layer", "kind", "macs", "weight_bytes", "activation_bytes", "weight_format", "activation_format",
           "latency_us"]
PAIRS = [("int8", "int8"), ("fp16", "fp16"), ("int8", "int16"), ("int4", "int8")]


def hidden_truth():
    """hexagon with different numbers: what the 'device' really does."""
    data = load_profile("hexagon").to_dict()
    data["compute"]["int8/int8"]["throughput"] = "9 TMAC/s"
    data["compute"]["fp16/fp16"]["throughput"] = "2.4 TMAC/s"
    data["compute"]["int8/int16"]["throughput"] = "4 TMAC/s"
    data["efficiency"]["depthwise"] = 0.35
    data["memory"]["bandwidth"] = "60 GB/s"
    data["overhead"]["per_op"] = "7 us"
    return profile_from_dict(data)


def measured_rows(truth, count=48, seed=0) -> list[Measurement]:
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(count):
        kind = ("conv", "gemm", "depthwise")[i % 3]
        weight, activation = PAIRS[(i // 3) % len(PAIRS)]
        row = Measurement(line=i + 2, layer=f"layer{i}", kind=kind, macs=float(round(10 ** rng.uniform(5, 9))),
                          bytes=float(round(10 ** rng.uniform(4, 8))), weight_format=weight,
                          activation_format=activation, latency_s=1.0)
        rows.append(Measurement(**{**vars(row), "latency_s": predict(truth, row)}))
    return rows


def write_csv(path: Path, rows: list[Measurement]) -> Path:
    with path.open("w", newline="") as stream:
        writer = csv.writer(stream)
        writer.writerow(COLUMNS)
        for row in rows:
            writer.writerow([row.layer, row.kind, int(row.macs), int(row.bytes // 2), int(row.bytes - row.bytes // 2),
                             row.weight_format, row.activation_format, repr(row.latency_s * 1e6)])
    return path


def test_fit_recovers_the_profile_that_made_the_measurements():
    truth = hidden_truth()
    result = fit_profile(load_profile("hexagon"), measured_rows(truth), name="device",
                         measurements_label="device.csv", sha256="0" * 64)
    fitted = result.profile
    for key in ("int8/int8", "fp16/fp16", "int8/int16"):
        assert fitted.spec.compute[key].throughput == pytest.approx(truth.spec.compute[key].throughput, rel=0.01)
    assert fitted.bandwidth == pytest.approx(60e9, rel=0.01)
    assert fitted.per_op_s == pytest.approx(7e-6, rel=0.01)
    assert fitted.spec.efficiency.depthwise == pytest.approx(0.35, rel=0.01)
    assert result.median_relative_error < 0.01 < result.base_median_relative_error
    assert fitted.per_graph_s == truth.per_graph_s                      # per-layer rows cannot tell it
    assert fitted.spec.compute["int8/int8"].energy_per_mac == truth.spec.compute["int8/int8"].energy_per_mac


def test_fitted_profile_records_how_it_was_made(tmp_path):
    csv_path = write_csv(tmp_path / "phone.csv", measured_rows(hidden_truth()))
    result = run_fit(csv_path, "hexagon", tmp_path / "My Phone.yaml")
    written = read_profile(tmp_path / "My Phone.yaml")
    assert written.name == "my-phone"
    fitted = written.spec.fitted
    assert fitted.base == "hexagon"
    assert fitted.measurements == str(csv_path) and fitted.rows == 48 and len(fitted.sha256) == 64
    assert "memory.bandwidth" in fitted.parameters
    fit_source = written.spec.sources[0]
    assert fit_source.flag == "measured" and "memory.bandwidth" in fit_source.used_for
    assert all("memory.bandwidth" not in source.used_for for source in written.spec.sources[1:])
    assert fitted.median_relative_error == pytest.approx(result.median_relative_error, rel=1e-3)


def test_reading_measurements_in_milliseconds_and_seconds(tmp_path):
    path = tmp_path / "m.csv"
    path.write_text("kind,macs,weight_bytes,activation_bytes,weight_format,activation_format,latency_ms\n"
                    "conv,1000000,1000,1000,int8,int8,0.5\n"
                    "gemm,2000,4000,100,int8,int8,0.01\n"
                    "act_matmul,5000,0,100,,int8,0.02\n")
    rows = read_measurements(path)
    assert [row.latency_s for row in rows] == pytest.approx([5e-4, 1e-5, 2e-5])
    assert rows[0].bytes == 2000 and rows[2].layer == "line 4"


@pytest.mark.parametrize("text, expected", [
    ("", r"m.csv: the file is empty"),
    ("kind,macs,weight_bytes,activation_bytes,weight_format,activation_format\n", r"header: expected exactly one latency column"),
    ("kind,macs,weight_bytes,activation_format,weight_format,latency_s\n", r"header: missing column 'activation_bytes'"),
    ("kind,macs,weight_bytes,activation_bytes,weight_format,activation_format,latency_s\n"
     "conv,lots,1,1,int8,int8,1\n", r"m.csv: line 2.macs: got 'lots', expected a number, zero or more"),
    ("kind,macs,weight_bytes,activation_bytes,weight_format,activation_format,latency_s\n"
     "conv,1,1,1,int8,int8,0\n", r"line 2.latency_s: got '0', expected a number above zero"),
    ("kind,macs,weight_bytes,activation_bytes,weight_format,activation_format,latency_s\n"
     "linear,1,1,1,int8,int8,1\n", r"line 2.kind: got 'linear', expected one of conv, depthwise, gemm, act_matmul"),
    ("kind,macs,weight_bytes,activation_bytes,weight_format,activation_format,latency_s\n"
     "conv,1,1,1,int9,int8,1\n", r"line 2.weight_format: got 'int9'"),
    ("kind,macs,weight_bytes,activation_bytes,weight_format,activation_format,latency_s\n"
     "conv,1,1,1,int8,int8,1\n", r"got 1 measured layers, expected at least 3"),
])
def test_bad_measurements_name_the_line_and_column(tmp_path, text, expected):
    path = tmp_path / "m.csv"
    path.write_text(text)
    with pytest.raises(QevoError, match=expected):
        read_measurements(path)


def test_formats_the_base_cannot_run_are_refused(tmp_path):
    rows = measured_rows(hidden_truth(), count=6)
    rows[2] = Measurement(**{**vars(rows[2]), "weight_format": "int3"})
    with pytest.raises(QevoError, match=r"line 4: hexagon does not offer int3 weights"):
        fit_profile(load_profile("hexagon"), rows, name="x", measurements_label="m.csv", sha256="0" * 64)


def test_profile_name_from_output_path():
    assert profile_name("out/My Phone (v2).yaml") == "my-phone-v2"
    assert profile_name("___.yaml") == "fitted"


# ---------------------------------------------------------------- CLI

def test_cli_fit_writes_the_profile_and_reports_json(tmp_path):
    csv_path = write_csv(tmp_path / "m.csv", measured_rows(hidden_truth()))
    out_path = tmp_path / "mine.yaml"
    result = runner.invoke(app, ["fit", str(csv_path), "--base", "hexagon", "-o", str(out_path), "--json"])
    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["rows"] == 48 and report["median_relative_error"] < 0.01
    assert len(report["layers"]) == 48 and report["path"] == str(out_path)
    written = read_profile(out_path)
    assert written.bandwidth == pytest.approx(60e9, rel=0.01)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.csv", "mine.yaml"]     # no temporary files left


def test_cli_fit_table_output_and_a_file_as_base(tmp_path):
    base = tmp_path / "base.yaml"
    base.write_text(load_profile("hexagon").dumps())
    csv_path = write_csv(tmp_path / "m.csv", measured_rows(hidden_truth()))
    result = runner.invoke(app, ["fit", str(csv_path), "--base", str(base), "-o", str(tmp_path / "out.yaml"),
                                 "--name", "lab-phone"])
    assert result.exit_code == 0, result.stderr
    assert "median relative error" in result.stdout and "memory.bandwidth" in result.stdout
    written = read_profile(tmp_path / "out.yaml")
    assert written.name == "lab-phone" and written.spec.fitted.base == str(base)


def test_cli_fit_bad_input_exits_2_and_writes_nothing(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("kind,macs\nconv,1\n")
    out_path = tmp_path / "out.yaml"
    result = runner.invoke(app, ["fit", str(bad), "--base", "hexagon", "-o", str(out_path)])
    assert result.exit_code == 2
    assert "bad.csv: header: missing column 'weight_bytes'" in result.stderr
    assert result.stdout == "" and not out_path.exists()
    good = write_csv(tmp_path / "m.csv", measured_rows(hidden_truth()))
    for args in (["--base", "hexagn"], ["--base", "hexagon", "--name", "Bad Name"]):
        result = runner.invoke(app, ["fit", str(good), *args, "-o", str(out_path)])
        assert result.exit_code == 2 and not out_path.exists() and "Traceback" not in result.stderr
    missing = runner.invoke(app, ["fit", str(tmp_path / "none.csv"), "--base", "hexagon", "-o", str(out_path)])
    assert missing.exit_code == 2 and "none.csv: cannot read measurements" in missing.stderr
