"""Every command and option has help text and appears in the user guide."""
from pathlib import Path

import typer.main

from qevo_cli.cli import app

GUIDE = Path(__file__).resolve().parents[1] / "docs" / "guide.md"


def _commands(command, path=("qevo",)):
    yield path, command
    for name, sub in getattr(command, "commands", {}).items():
        yield from _commands(sub, path + (name,))


def test_every_command_and_option_has_help_and_is_in_the_guide():
    guide = GUIDE.read_text()
    missing_help, missing_in_guide = [], []
    for path, command in _commands(typer.main.get_command(app)):
        name = " ".join(path)
        if not (command.help or "").strip():
            missing_help.append(name)
        if len(path) > 1 and not getattr(command, "commands", None) and name not in guide:
            missing_in_guide.append(name)
        for param in command.params:
            if not (getattr(param, "help", None) or "").strip():
                missing_help.append(f"{name} {param.name}")
            for option in getattr(param, "opts", []):
                if option.startswith("--") and option != "--help" and option not in guide:
                    missing_in_guide.append(f"{name} {option}")
    assert not missing_help, f"no help text: {missing_help}"
    assert not missing_in_guide, f"not in docs/guide.md: {missing_in_guide}"
