"""Policies are plain versioned data that round-trip through YAML and JSON."""
import json

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from qevo_cli.errors import QevoError
from qevo_cli.policy import (ACTIVATION_FORMATS, CALIBRATIONS, GRANULARITIES, WEIGHT_FORMATS, WEIGHT_RANGES,
                             LayerChoice, Policy)

choices = st.builds(LayerChoice, weight=st.sampled_from(WEIGHT_FORMATS), activation=st.sampled_from(ACTIVATION_FORMATS),
                    granularity=st.sampled_from(GRANULARITIES), calibration=st.sampled_from(CALIBRATIONS),
                    symmetric=st.booleans(), weight_range=st.sampled_from(WEIGHT_RANGES))
policies = st.dictionaries(st.text(min_size=1, max_size=20), choices, max_size=8).map(Policy)


@given(policies)
def test_round_trip_yaml_and_json(policy):
    assert Policy.from_dict(yaml.safe_load(policy.dumps("yaml"))) == policy
    assert Policy.from_dict(json.loads(policy.dumps("json"))) == policy
    assert Policy.from_dict(policy.to_dict()).key() == policy.key()


def test_files_round_trip(tmp_path):
    policy = Policy({"conv": LayerChoice(weight="int4", granularity="per-group-64"), "fc": LayerChoice()})
    for suffix in ("yaml", "json"):
        path = tmp_path / f"p.{suffix}"
        path.write_text(policy.dumps(suffix))
        assert Policy.load(path) == policy


@pytest.mark.parametrize("data, message", [
    ({"version": 3, "layers": {}}, "version: got 3, expected 1, or 2 for a policy that prunes channels"),
    ({"version": 1}, "layers: expected a mapping"),
    ({"version": 1, "layers": {"c": {"weight": "int9"}}}, "layers.c.weight: got 'int9', expected one of"),
    ({"version": 1, "layers": {"c": {"wieght": "int8"}}}, "layers.c.wieght: unknown key 'wieght'"),
    ({"version": 1, "layers": {"c": {"symmetric": "yes"}}}, "layers.c.symmetric: got 'yes', expected true or false"),
    ({"version": 1, "layers": {}, "extra": 1}, "extra: unknown key"),
    (["not", "a", "mapping"], "expected a mapping"),
])
def test_invalid_policies_name_the_field(tmp_path, data, message):
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(QevoError) as info:
        Policy.load(path)
    assert str(info.value).startswith(str(path))
    assert message in str(info.value)


def test_unreadable_policy_files(tmp_path):
    with pytest.raises(QevoError, match="cannot read"):
        Policy.load(tmp_path / "missing.yaml")
    (tmp_path / "broken.yaml").write_text("layers: [unclosed")
    with pytest.raises(QevoError, match="not valid YAML"):
        Policy.load(tmp_path / "broken.yaml")


def test_summary_and_short_labels():
    policy = Policy({"a": LayerChoice(weight="int4"), "b": LayerChoice(weight="int8", activation="int16"),
                     "c": LayerChoice(weight="fp16", activation="fp16")})
    assert policy.summary() == "W4:1 W8:1 W16f:1 A8:1 A16:1 A16f:1"
    assert policy.layers["a"].short() == "W4A8"
    assert policy.choice("missing").weight == "fp32"
