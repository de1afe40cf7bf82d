import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "benchmarks"))


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path_factory, monkeypatch):
    """Every test gets its own cache directory: no test reads another's results."""
    cache = tmp_path_factory.mktemp("qevo-cache")
    monkeypatch.setenv("QEVO_CACHE_DIR", str(cache))
    return cache


@pytest.fixture(scope="session")
def default_workspace():
    from qevo_cli.workspace import open_workspace

    return open_workspace()


@pytest.fixture(scope="session")
def default_evaluator(default_workspace):
    return default_workspace.evaluator()
