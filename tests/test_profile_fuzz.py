"""Properties of the cost model over random layers and choices, and a fuzz of the profile loader."""
from __future__ import annotations

import copy
import math

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from qevo_cli.cost import layer_cost, model_cost, weight_bytes
from qevo_cli.errors import QevoError
from qevo_cli.layers import Layer
from qevo_cli.policy import ACTIVATION_FORMATS, GRANULARITIES, WEIGHT_FORMATS, LayerChoice, Policy
from qevo_cli.profiles import list_profiles, load_profile, parse_profile, profile_from_dict, read_profile

PROFILES = {name: load_profile(name) for name in list_profiles()}
INT_FORMATS = [f"int{bits}" for bits in range(2, 9)]
FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
PROPERTY = settings(max_examples=200, deadline=None)


@st.composite
def layers(draw) -> Layer:
    kind = draw(st.sampled_from(["conv", "depthwise", "gemm", "act_matmul"]))
    pixels = draw(st.integers(1, 4096))
    if kind == "act_matmul":
        m, k, n = (draw(st.integers(1, 512)) for _ in range(3))
        return Layer("l", "MatMul", kind, "a", "b", None, (), 0, m * k * n, m * k + k * n, m * n)
    if kind == "gemm":
        out, inp = draw(st.integers(1, 4096)), draw(st.integers(1, 4096))
        transposed = draw(st.booleans())
        shape = (inp, out) if transposed else (out, inp)
        return Layer("l", "MatMul" if transposed else "Gemm", kind, "a", "b", "w", shape, out * inp, out * inp,
                     inp, out, 1 if transposed else 0, 0 if transposed else 1)
    kernel = draw(st.sampled_from([1, 3, 5, 7]))
    out = draw(st.integers(1, 512))
    inp = 1 if kind == "depthwise" else draw(st.integers(1, 512))
    params = out * inp * kernel * kernel
    return Layer("l", "Conv", kind, "a", "b", "w", (out, inp, kernel, kernel), params, params * pixels,
                 (out if kind == "depthwise" else inp) * pixels, out * pixels, 0, 1)


choices = st.builds(LayerChoice, weight=st.sampled_from(WEIGHT_FORMATS), activation=st.sampled_from(ACTIVATION_FORMATS),
                    granularity=st.sampled_from(GRANULARITIES), symmetric=st.booleans())
profiles = st.sampled_from(sorted(PROFILES)).map(PROFILES.get)


# ---------------------------------------------------------------- cost properties

@PROPERTY
@given(layer=layers(), choice=choices, data=st.data())
def test_fewer_weight_bits_never_increase_bytes(layer, choice, data):
    bits = data.draw(st.sampled_from(INT_FORMATS))
    fewer = data.draw(st.sampled_from(INT_FORMATS[:INT_FORMATS.index(bits) + 1]))
    more_choice = LayerChoice(weight=bits, activation="int8", granularity=choice.granularity, symmetric=choice.symmetric)
    fewer_choice = LayerChoice(weight=fewer, activation="int8", granularity=choice.granularity,
                               symmetric=choice.symmetric)
    assert weight_bytes(layer, fewer_choice) <= weight_bytes(layer, more_choice)
    neon = PROFILES["arm-neon"]          # offers every format, so the whole layer can be costed
    assert layer_cost(layer, fewer_choice, neon).bytes <= layer_cost(layer, more_choice, neon).bytes
    fp16 = LayerChoice(weight="fp16", activation="fp16")
    assert weight_bytes(layer, fp16) <= weight_bytes(layer, LayerChoice(weight="fp32", activation="fp16"))


@PROPERTY
@given(profile=profiles, layer=layers(), choice=choices)
def test_latency_and_energy_are_positive_and_finite(profile, layer, choice):
    if not profile.offers(layer, choice):
        return
    cost = layer_cost(layer, choice, profile)
    for value in (cost.latency_s, cost.energy_j):
        assert math.isfinite(value) and value > 0
    assert cost.bytes >= cost.weight_bytes >= 0
    total = model_cost([layer], Policy({"l": choice}), profile)
    assert math.isfinite(total.latency_s) and total.latency_s >= cost.latency_s


@PROPERTY
@given(profile=profiles, layer=layers(), choice=choices)
def test_an_unsupported_format_never_computes_faster_than_its_fallback(profile, layer, choice):
    if not profile.offers(layer, choice):
        return
    cost = layer_cost(layer, choice, profile)
    if cost.native:
        return
    weight, activation = cost.compute.split("/")
    fallback = LayerChoice(weight=weight, activation=activation, granularity=choice.granularity,
                           symmetric=choice.symmetric)
    assert profile.offers(layer, fallback)
    reference = layer_cost(layer, fallback, profile)
    assert cost.compute_s >= reference.compute_s
    compute_energy = reference.energy_j - reference.bytes * profile.joules_per_byte
    # the two sides subtract large memory terms: compare with a relative tolerance
    assert cost.energy_j - cost.bytes * profile.joules_per_byte >= compute_energy - 1e-9 * abs(compute_energy)


# ---------------------------------------------------------------- YAML round trip

positive = st.floats(min_value=1e-300, max_value=1e300, allow_nan=False, allow_infinity=False)
# what a profile accepts: a throughput or bandwidth of 1e-300 per second is a typo, not a chip
throughputs = st.floats(min_value=1e3, max_value=1e18, allow_nan=False, allow_infinity=False)
durations = st.floats(min_value=1e-15, max_value=3600.0, allow_nan=False, allow_infinity=False)


@PROPERTY
@given(name=st.sampled_from(sorted(PROFILES)), throughput=throughputs, bandwidth=st.floats(1e3, 1e16),
       per_op=durations, energy=positive, efficiency=st.floats(min_value=1e-9, max_value=1.0))
def test_a_profile_survives_yaml_round_trip(name, throughput, bandwidth, per_op, energy, efficiency):
    data = copy.deepcopy(PROFILES[name].to_dict())
    first = next(iter(data["compute"]))
    data["compute"][first]["throughput"] = f"{throughput!r} MAC/s"
    data["compute"][first]["energy_per_mac"] = f"{energy!r} J/MAC"
    data["memory"]["bandwidth"] = f"{bandwidth!r} B/s"
    data["overhead"]["per_op"] = f"{per_op!r} s"
    data["efficiency"]["gemm"] = efficiency
    profile = profile_from_dict(data)
    again = parse_profile(profile.dumps())
    assert again.spec == profile.spec
    assert again.spec.compute[first].throughput == throughput
    assert again.bandwidth == bandwidth and again.per_op_s == per_op


# ---------------------------------------------------------------- loader fuzz: QevoError or a profile, nothing else

def assert_clean(load) -> None:
    try:
        load()
    except QevoError as error:
        assert "\n" not in str(error) and str(error)


@FUZZ
@given(text=st.text())
def test_random_text(text):
    assert_clean(lambda: parse_profile(text, "fuzz.yaml"))


@FUZZ
@given(blob=st.binary())
def test_random_bytes_in_a_file(tmp_path_factory, blob):
    path = tmp_path_factory.mktemp("fuzz") / "profile.yaml"
    path.write_bytes(blob)
    assert_clean(lambda: read_profile(path))


yaml_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12)
    | st.sampled_from(["1 GB/s", "0 s", "-1 us", "int4", "int8/int8", "estimate", "2:4", "1e999 TMAC/s", "nan pJ/B"]),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3),
    max_leaves=6)


def _paths(node, prefix=()):
    yield prefix
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _paths(value, prefix + (key,))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _paths(value, prefix + (index,))


@FUZZ
@given(name=st.sampled_from(sorted(PROFILES)), data=st.data())
def test_mutated_profiles(name, data):
    document = copy.deepcopy(PROFILES[name].to_dict())
    for _ in range(data.draw(st.integers(1, 3))):
        paths = [path for path in _paths(document) if path]
        if not paths:
            break
        path = data.draw(st.sampled_from(paths))
        parent = document
        for part in path[:-1]:
            parent = parent[part]
        action = data.draw(st.sampled_from(["replace", "delete", "add"]))
        if action == "replace":
            parent[path[-1]] = data.draw(yaml_values)
        elif action == "delete":
            del parent[path[-1]]
        elif isinstance(parent, dict):
            parent[data.draw(st.text(max_size=8))] = data.draw(yaml_values)
    text = yaml.dump(document, Dumper=getattr(yaml, "CSafeDumper", yaml.SafeDumper), allow_unicode=True)
    assert_clean(lambda: parse_profile(text, "fuzz.yaml"))


@FUZZ
@given(name=st.sampled_from(sorted(PROFILES)), data=st.data())
def test_damaged_yaml_text(name, data):
    text = PROFILES[name].dumps()
    start = data.draw(st.integers(0, len(text)))
    end = data.draw(st.integers(start, min(len(text), start + 40)))
    damaged = text[:start] + data.draw(st.text(max_size=10)) + text[end:]
    assert_clean(lambda: parse_profile(damaged, "fuzz.yaml"))


def test_deep_nesting_is_a_clean_error():
    assert_clean(lambda: parse_profile("[" * 5000 + "]" * 5000, "deep.yaml"))
    assert_clean(lambda: parse_profile("a: " + "{b: " * 3000 + "1" + "}" * 3000, "deep.yaml"))
