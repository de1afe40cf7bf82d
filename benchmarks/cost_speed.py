"""How fast the cost model prices policies, against the time one measured evaluation takes.

    python benchmarks/cost_speed.py

A search prices every policy it considers (seeding sweeps, racing predictions) and measures only some, so
the cost model must stay far cheaper than a measurement. Prints layer costs per second on the bundled
model for every built-in profile, and the ratio to one measured evaluation of the same model, both taken
in this run.
"""
from __future__ import annotations

import time

from qevo_cli.cost import model_cost
from qevo_cli.policy import LayerChoice, Policy
from qevo_cli.profiles import list_profiles, load_profile, uniform_policy
from qevo_cli.workspace import open_workspace


def main() -> None:
    workspace = open_workspace(None, None, None, None)
    evaluator = workspace.evaluator(threads=1)
    layers = workspace.model.layers
    started = time.perf_counter()
    evaluator.evaluate(Policy({layer.name: LayerChoice("int4", "int8") for layer in layers}))
    measured_s = time.perf_counter() - started
    print(f"one measured evaluation of {workspace.model.name} ({len(layers)} layers): {1e3 * measured_s:.1f} ms")
    for name in list_profiles():
        profile = load_profile(name)
        policy = uniform_policy(profile, layers, LayerChoice("int8", "int8"))[0]
        repeats, started = 0, time.perf_counter()
        while time.perf_counter() - started < 0.5:
            model_cost(layers, policy, profile, workspace.model.other_bytes)
            repeats += 1
        per_policy = (time.perf_counter() - started) / repeats
        print(f"{name:<12} {repeats * len(layers) / (time.perf_counter() - started):>12,.0f} layer costs/s   "
              f"{measured_s / per_policy:>10,.0f} policies priced per policy measured")


if __name__ == "__main__":
    main()
