"""The per-target sanity table of docs/profiles.md: the bundled default model at fp32, uniform
W8A8 and uniform W4A8 on every built-in profile.

    python scripts/profile_table.py                          # print the table
    python scripts/profile_table.py --write docs/profiles.md # replace the table between its markers

Where a target does not offer W4A8 for a layer, that layer stays at W8A8 and the table says how many did.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from qevo_cli.cost import model_cost
from qevo_cli.defaults import DEFAULT_MODEL
from qevo_cli.model import load_model
from qevo_cli.policy import FP32, LayerChoice
from qevo_cli.files import atomic_write_text
from qevo_cli.profiles import list_profiles, load_profile, uniform_policy

START = "<!-- profile-table:start -->"
END = "<!-- profile-table:end -->"
POLICIES = {"fp32": FP32, "W8A8": LayerChoice(weight="int8", activation="int8"),
            "W4A8": LayerChoice(weight="int4", activation="int8")}


def table(model_path: Path = DEFAULT_MODEL) -> str:
    model = load_model(model_path)
    lines = ["| target | policy | latency (us) | energy (uJ) | size (kB) | memory-bound layers | not offered, kept W8A8 |",
             "|---|---|---:|---:|---:|---:|---:|"]
    for name in list_profiles():
        profile = load_profile(name)
        for label, choice in POLICIES.items():
            policy, behind = uniform_policy(profile, model.layers, choice)
            cost = model_cost(model.layers, policy, profile, other_bytes=model.other_bytes)
            memory_bound = sum(layer.bound == "memory" for layer in cost.layers)
            lines.append(f"| {name} | {label} | {cost.latency_s * 1e6:.1f} | {cost.energy_j * 1e6:.2f} | "
                         f"{cost.weight_bytes / 1e3:.1f} | {memory_bound}/{len(cost.layers)} | {len(behind) or ''} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", type=Path, help="markdown file whose table between the markers is replaced")
    args = parser.parse_args()
    text = table()
    if args.write is None:
        print(text, end="")
        return
    document = args.write.read_text()
    if START not in document or END not in document:
        raise SystemExit(f"{args.write}: expected the markers {START} and {END}")
    before, rest = document.split(START, 1)
    after = rest.split(END, 1)[1]
    atomic_write_text(args.write, f"{before}{START}\n{text}{END}{after}")


if __name__ == "__main__":
    main()
