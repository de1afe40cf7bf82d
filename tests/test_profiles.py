"""Hardware profiles: the built-ins, strict validation, what each target offers, and the CLI."""
from __future__ import annotations

import copy
import importlib.util
import json
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from qevo_cli.cli.profiles import app
from qevo_cli.errors import QevoError
from qevo_cli.layers import Layer
from qevo_cli.policy import ACTIVATION_FORMATS, FP32, WEIGHT_FORMATS, LayerChoice
from qevo_cli.profile_schema import SCHEMA_VERSION, sources_for, value_paths
from qevo_cli.profiles import (list_profiles, load_profile, parse_profile, profile_from_dict, supported_choices,
                               supported_formats, uniform_policy)

BUILTINS = ["apple-ane", "arm-dot", "arm-neon", "hexagon", "host", "intel-vnni", "nvidia-trt"]
runner = CliRunner()


def conv(name: str, out_channels: int, in_channels: int, kernel: int, pixels: int = 64) -> Layer:
    params = out_channels * in_channels * kernel * kernel
    return Layer(name, "Conv", "conv", "x", "y", f"{name}.weight", (out_channels, in_channels, kernel, kernel),
                 params, params * pixels, in_channels * pixels, out_channels * pixels, 0, 1)


def gemm(name: str, out_features: int, in_features: int) -> Layer:
    return Layer(name, "Gemm", "gemm", "x", "y", f"{name}.weight", (out_features, in_features),
                 out_features * in_features, out_features * in_features, in_features, out_features, 0, 1)


ACT_MATMUL = Layer("scores", "MatMul", "act_matmul", "q", "s", None, (), 0, 64 * 64 * 32, 2 * 64 * 32, 64 * 64)


def builtin_dict(name: str) -> dict:
    return copy.deepcopy(load_profile(name).to_dict())


# ---------------------------------------------------------------- built-ins

def test_the_builtins_are_listed():
    assert list_profiles() == BUILTINS


@pytest.mark.parametrize("name", BUILTINS)
def test_builtin_loads_and_every_value_has_a_flagged_source(name):
    profile = load_profile(name)
    assert profile.name == name and profile.chip
    assert profile.spec.schema_version == SCHEMA_VERSION
    for key in value_paths(profile.spec):
        assert sources_for(profile.spec, key), f"{name}: {key} has no source"
    assert {source.flag for source in profile.spec.sources} <= {"measured", "datasheet", "estimate"}
    assert profile.run_label("fp32", "fp32") is not None


@pytest.mark.parametrize("name", BUILTINS)
def test_builtin_round_trips_through_yaml(name):
    profile = load_profile(name)
    again = parse_profile(profile.dumps(), "again.yaml")
    assert again.spec == profile.spec
    assert again.dumps() == profile.dumps()


def test_load_by_path_and_unknown_name(tmp_path):
    path = tmp_path / "mine.yaml"
    path.write_text(load_profile("hexagon").dumps())
    assert load_profile(str(path)).name == "hexagon"
    with pytest.raises(QevoError, match=r"unknown profile 'hexagn' \(did you mean 'hexagon'\?\)"):
        load_profile("hexagn")
    with pytest.raises(QevoError, match="missing.yaml: cannot read profile file"):
        load_profile(str(tmp_path / "missing.yaml"))


# ---------------------------------------------------------------- validation: one line, file, key, expectation

def _edit(mutate):
    data = builtin_dict("hexagon")
    mutate(data)
    return data


@pytest.mark.parametrize("mutate, expected", [
    (lambda d: d["memory"].update(bandwidth="0 GB/s"), r"mine.yaml: memory.bandwidth: got '0 GB/s', expected a bandwidth above zero"),
    (lambda d: d["memory"].update(bandwidth="-136 GB/s"), r"memory.bandwidth: got '-136 GB/s', expected a bandwidth above zero"),
    (lambda d: d["memory"].update(bandwidth="136 GB/sec"), r"memory.bandwidth: unknown unit 'GB/sec' in '136 GB/sec', expected one of"),
    (lambda d: d["memory"].update(bandwidth=136), r"memory.bandwidth: got 136 without a unit, expected a bandwidth such as"),
    (lambda d: d["overhead"].update(per_op="2 sec"), r"overhead.per_op: unknown unit 'sec'"),
    (lambda d: d["compute"]["int8/int8"].update(throughput="45 TOPS"), r"compute.int8/int8.throughput: unknown unit 'TOPS'.*TMAC/s"),
    (lambda d: d["memory"].pop("bandwidth"), r"memory.bandwidth: missing, expected a value"),
    (lambda d: d.pop("chip"), r"mine.yaml: chip: missing"),
    (lambda d: d["memory"].update(bandwdith="1 GB/s"), r"memory.bandwdith: unknown key \(did you mean 'bandwidth'\?\), expected one of bandwidth, energy_per_byte"),
    (lambda d: d["fallback"]["weight"].update(int4="int9"), r"fallback.weight.int4: got 'int9', expected 'fp32'"),
    (lambda d: d["not_offered"].update(weight=["int33"]), r"not_offered.weight.0: got 'int33'"),
    (lambda d: d["compute"].update({"int8/int9": d["compute"]["int8/int8"]}), r"compute.int8/int9: unknown activation format 'int9'"),
    (lambda d: d.update(schema_version=2), r"schema_version: got 2, expected 1"),
    (lambda d: d["efficiency"].update(conv=1.5), r"efficiency.conv: got 1.5, expected a share of peak above 0 and at most 1"),
    (lambda d: d["efficiency"].pop("gemm"), r"efficiency.gemm: missing"),
    (lambda d: d["sources"][0].update(flag="guess"), r"sources.0.flag: got 'guess', expected 'measured', 'datasheet' or 'estimate'"),
    (lambda d: d["sources"][0].update(used_for=["memory.bandwith"]), r"sources.0.used_for.0: .*did you mean 'memory.bandwidth'"),
    (lambda d: d["fallback"]["weight"].update(int8="int4"), r"fallback.weight.int4: fallbacks from int4 go round in a circle"),
    (lambda d: d["fallback"]["weight"].update(int3="int8"), r"fallback.weight.int3: int3 is also listed in not_offered.weight"),
    (lambda d: d.update(compute={"int8/int8": d["compute"]["int8/int8"]}), r"sources.\d+.used_for.\d+: got 'compute.int8/int16.throughput'"),
    (lambda d: d.update(limits=[{"weight": ["int4"]}]), r"limits.0.kinds: missing"),
    (lambda d: d.update(name="Hex agon"), r"name: got 'Hex agon', expected a name of lowercase letters"),
    (lambda d: d.update(sparsity=[{"pattern": "2-4", "speedup": 2}]), r"sparsity.0.pattern: got '2-4', expected N:M"),
])
def test_bad_values_name_file_key_and_expectation(mutate, expected):
    with pytest.raises(QevoError, match=expected) as caught:
        profile_from_dict(_edit(mutate), "mine.yaml")
    assert "\n" not in str(caught.value)


def test_fp32_must_run_somewhere():
    data = builtin_dict("arm-neon")
    del data["compute"]["fp32/fp32"]
    for source in data["sources"]:
        source["used_for"] = [key for key in source["used_for"] if not key.startswith("compute.fp32")]
    with pytest.raises(QevoError, match="compute: fp32 weights with fp32 activations must run"):
        profile_from_dict(data, "mine.yaml")


@pytest.mark.parametrize("text, expected", [
    ("name: [unclosed", r"bad.yaml: not valid YAML at line \d"),
    ("", r"bad.yaml: the file is empty"),
    ("- a\n- b\n", r"bad.yaml: got list, expected a mapping"),
    ("name: x\n\tchip: y\n", r"bad.yaml: not valid YAML at line 2"),
])
def test_yaml_problems(text, expected):
    with pytest.raises(QevoError, match=expected):
        parse_profile(text, "bad.yaml")


# ---------------------------------------------------------------- what a target offers

ALL_CHOICES = [LayerChoice(weight=w, activation=a) for w in WEIGHT_FORMATS for a in ACTIVATION_FORMATS]


def test_hexagon_int4_on_conv_and_linear_layers_int2_on_linear_only():
    hexagon = load_profile("hexagon")
    w4a8, w2a8 = LayerChoice(weight="int4", activation="int8"), LayerChoice(weight="int2", activation="int8")
    for layer in (conv("pointwise", 64, 32, 1), conv("conv5", 64, 64, 3), gemm("head", 10, 64)):
        assert hexagon.offers(layer, w4a8)
    assert hexagon.run_label("int4", "int8") == "int8/int8"           # unpacked: saves bytes, not compute
    assert hexagon.offers(gemm("fc", 64, 1024), w2a8)
    assert not hexagon.offers(conv("conv5", 64, 64, 3), w2a8)
    assert "int2 weights only for gemm layers" in hexagon.why_not(conv("conv5", 64, 64, 3), w2a8)
    assert not hexagon.offers(gemm("fc", 64, 1024), LayerChoice(weight="int3"))
    assert not hexagon.offers(gemm("fc", 64, 1024), LayerChoice(activation="dynamic-int8"))


def test_supported_choices_filters_per_layer():
    nvidia = load_profile("nvidia-trt")
    kept = supported_choices(nvidia, conv("c", 64, 64, 3), ALL_CHOICES)
    assert {c.weight for c in kept} == {"fp32", "fp16", "int8"}            # int4 is for linear layers only
    assert {c.activation for c in kept} == {"fp32", "fp16", "int8"}
    kept = supported_choices(nvidia, gemm("fc", 64, 1024), ALL_CHOICES)
    assert LayerChoice(weight="int4", activation="fp16") in kept          # W4A16: bandwidth only
    assert nvidia.run_label("int4", "fp16") == "fp16/fp16"
    assert supported_formats(nvidia, ACT_MATMUL) == [("fp32", "fp32"), ("fp32", "fp16"), ("fp32", "int8")]
    assert ("int4", "int8") in supported_formats(nvidia, gemm("fc", 64, 1024))


def test_every_target_offers_fp32_everywhere_and_something_for_activation_matmuls():
    for name in BUILTINS:
        profile = load_profile(name)
        for layer in (conv("c", 8, 8, 3), gemm("g", 8, 8), ACT_MATMUL):
            assert profile.offers(layer, FP32)
        assert supported_choices(profile, ACT_MATMUL, ALL_CHOICES)


def test_unpacked_and_dequantized_formats_run_on_their_fallback():
    neon = load_profile("arm-neon")
    assert neon.run_label("int4", "int8") == "int8/int8"      # int4 unpacked to int8
    assert neon.run_label("int8", "fp32") == "fp32/fp32"      # weight-only: dequantized
    assert neon.run_label("fp16", "fp16") == "fp32/fp32"      # no fp16 arithmetic on Armv8.0
    assert neon.run_label("int8", "dynamic-int8") == "int8/int8"
    ane = load_profile("apple-ane")
    assert ane.run_label("fp32", "fp32") == "fp16/fp16"
    assert ane.run_label("int5", "fp16") is None


# ---------------------------------------------------------------- CLI

def test_cli_list_json():
    result = runner.invoke(app, ["list", "--json"])
    assert result.exit_code == 0
    rows = json.loads(result.stdout)
    assert [row["name"] for row in rows] == BUILTINS
    assert all(row["sources"] > 0 and row["chip"] for row in rows)


def test_cli_list_table():
    result = runner.invoke(app, ["list"])
    assert result.exit_code == 0 and "hexagon" in result.stdout


def test_cli_show_json_and_table(tmp_path):
    result = runner.invoke(app, ["show", "hexagon", "--json"])
    assert result.exit_code == 0
    shown = json.loads(result.stdout)
    assert shown["profile"]["name"] == "hexagon"
    assert shown["offered"]["int4"]["int8"] == "int8/int8" and shown["offered"]["int3"]["int8"] is None
    bandwidth = next(v for v in shown["values"] if v["key"] == "memory.bandwidth")
    assert bandwidth["value"] == "136 GB/s" and bandwidth["sources"][0]["flag"] == "datasheet"
    table = runner.invoke(app, ["show", "hexagon"])
    assert table.exit_code == 0 and "x-elite-launch" in table.stdout


def test_cli_show_bad_file_exits_2_with_one_line(tmp_path):
    path = tmp_path / "bad.yaml"
    data = builtin_dict("arm-neon")
    data["memory"]["bandwidth"] = "2.49 GB/z"
    path.write_text(yaml.safe_dump(data))
    result = runner.invoke(app, ["show", str(path)])
    assert result.exit_code == 2
    assert result.stdout == ""
    assert result.stderr.strip().count("\n") == 0
    assert "bad.yaml: memory.bandwidth: unknown unit 'GB/z'" in result.stderr
    missing = runner.invoke(app, ["show", "nope", "--json"])
    assert missing.exit_code == 2 and missing.stdout == ""


def test_uniform_policy_keeps_what_the_target_does_not_offer_at_the_fallback():
    layers = [conv("pointwise", 64, 32, 1), conv("conv5", 64, 64, 3), gemm("head", 10, 64)]
    policy, behind = uniform_policy(load_profile("hexagon"), layers, LayerChoice(weight="int2"))
    assert behind == ["pointwise", "conv5"]
    assert policy.choice("head").weight == "int2" and policy.choice("conv5") == LayerChoice()


def test_docs_sanity_table_is_what_the_script_prints():
    root = Path(__file__).resolve().parents[1]
    spec = importlib.util.spec_from_file_location("profile_table", root / "scripts" / "profile_table.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    document = (root / "docs" / "profiles.md").read_text()
    assert f"{script.START}\n{script.table()}{script.END}" in document
