"""Property-based tests for the config loader and the genome (policy <-> integer vector)."""
import numpy as np
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from qevo_cli.config import SearchConfig
from qevo_cli.errors import QevoError
from qevo_cli.genome import Allowed, build_space
from qevo_cli.policy import ACTIVATION_FORMATS, GRANULARITIES, WEIGHT_FORMATS
from qevo_cli.profiles import list_profiles, load_profile

values = st.recursive(st.none() | st.booleans() | st.integers(-5, 100) | st.floats(allow_nan=True) |
                      st.text(max_size=12), lambda inner: st.lists(inner, max_size=4) |
                      st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=8)
keys = st.sampled_from(["target", "pop", "generations", "seed", "objectives", "weight_formats", "act_formats",
                        "dims", "max_drop", "time_limit", "out", "algorithm", "evaluations", "workers", "popp"])


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(keys, values, max_size=6))
def test_config_loader_gives_a_config_or_a_clean_error(data):
    try:
        config = SearchConfig.from_mapping({"target": "hexagon", **data}, "c.yaml")
    except QevoError as err:
        assert "\n" not in str(err) and str(err).startswith("c.yaml")
        return
    again = SearchConfig.from_mapping(yaml.safe_load(yaml.safe_dump(config.to_dict())), "c.yaml")
    assert again == config          # a valid config survives its own YAML round trip


@settings(max_examples=100, deadline=None)
@given(st.text(max_size=200))
def test_config_file_text_never_raises_anything_else(tmp_path_factory, text):
    path = tmp_path_factory.mktemp("cfg") / "c.yaml"
    path.write_text(text)
    try:
        SearchConfig.from_file(path)
    except QevoError:
        pass


@pytest.fixture(scope="module")
def layers():
    from qevo_cli.workspace import open_workspace
    return open_workspace(need_data=False).model.layers


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(target=st.sampled_from(list_profiles()),
       weights=st.lists(st.sampled_from(WEIGHT_FORMATS), min_size=1, max_size=4, unique=True),
       activations=st.lists(st.sampled_from(ACTIVATION_FORMATS), min_size=1, max_size=3, unique=True),
       granularities=st.lists(st.sampled_from(GRANULARITIES), min_size=1, max_size=2, unique=True),
       data=st.data())
def test_genome_decode_encode_round_trip(layers, target, weights, activations, granularities, data):
    profile = load_profile(target)
    space = build_space(layers, profile, Allowed(tuple(weights), tuple(activations), tuple(granularities)))
    x = np.array([data.draw(st.integers(0, int(u))) for u in space.upper], dtype=int)
    policy = space.decode(x)
    assert np.array_equal(space.encode(policy), x)
    assert set(policy.layers) == {layer.name for layer in layers}
    for layer in layers:   # the target runs every choice the space holds
        assert profile.why_not(layer, policy.choice(layer.name)) is None or policy.choice(layer.name).weight == "fp32"
    # out-of-range and fractional genes are clipped and rounded, never crash
    assert space.decode(x + 0.4) == policy
    assert set(space.decode(np.full(space.n_var, 10**6)).layers) == set(policy.layers)
