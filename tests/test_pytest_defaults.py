"""``pytest`` alone is the quick run: the budget defaults to ``smoke`` under pytest, an explicit
``ADVLIB_BUDGET`` wins, and ``../shared/data`` is the data root when ``ADVLIB_DATA`` is unset."""
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PROBE_OUT = "ADVLIB_TEST_PROBE_OUT"


def test_probe_environment():
    """Run by the tests below in a child pytest: write what this pytest process sees."""
    out = os.environ.get(PROBE_OUT)
    if not out:
        pytest.skip("only meaningful inside test_pytest_defaults' child run")
    from advlib import budget
    Path(out).write_text(json.dumps({"budget": budget.current(), "data": os.environ.get("ADVLIB_DATA")}))


def _child_pytest(tmp_path, **env_overrides):
    env = {k: v for k, v in os.environ.items() if k not in ("ADVLIB_BUDGET", "ADVLIB_DATA")}
    env.update(env_overrides)
    out = tmp_path / "probe.json"
    env[PROBE_OUT] = str(out)
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-o", "addopts=-p no:cacheprovider",
                           f"{Path(__file__).name}::test_probe_environment"],
                          cwd=ROOT / "tests", env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return json.loads(out.read_text())


def test_pytest_defaults_to_smoke_and_shared_data(tmp_path):
    seen = _child_pytest(tmp_path)
    assert seen["budget"] == "smoke"
    shared = (ROOT / ".." / "shared" / "data").resolve()
    assert seen["data"] == (str(shared) if shared.is_dir() else None)


def test_explicit_environment_wins(tmp_path):
    seen = _child_pytest(tmp_path, ADVLIB_BUDGET="book", ADVLIB_DATA=str(tmp_path))
    assert seen == {"budget": "book", "data": str(tmp_path)}


def test_defaults_function_leaves_set_values(tmp_path):
    spec = importlib.util.spec_from_file_location("root_conftest", ROOT / "conftest.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    quick_run_defaults = module.quick_run_defaults
    env = {"ADVLIB_BUDGET": "paper"}
    assert quick_run_defaults(env, root=tmp_path) == {}  # no ../shared/data beside tmp_path
    assert env == {"ADVLIB_BUDGET": "paper"}
    (tmp_path.parent / "shared" / "data").mkdir(parents=True, exist_ok=True)
    env = {}
    assert quick_run_defaults(env, root=tmp_path)["ADVLIB_BUDGET"] == "smoke"
    assert env["ADVLIB_DATA"] == str((tmp_path / ".." / "shared" / "data").resolve())
