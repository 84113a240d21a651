"""corrkit, corrkit.kernels and corrkit.cli never import torch (or ray); the main job runs without them."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

BLOCK = "import sys; sys.modules['torch'] = None  # any `import torch` now raises ImportError\n"
NO_RAY = "import sys; sys.modules['ray'] = None\n"


def _run(code: str):
    return subprocess.run([sys.executable, "-c", BLOCK + textwrap.dedent(code)], capture_output=True, text=True)


def test_imports_do_not_pull_torch():
    r = subprocess.run([sys.executable, "-c", textwrap.dedent("""
        import sys, pkgutil, importlib
        import corrkit, corrkit.kernels, corrkit.cli
        for pkg in (corrkit, corrkit.kernels, corrkit.cli):
            for m in pkgutil.iter_modules(pkg.__path__):
                if m.name != "__main__":
                    importlib.import_module(pkg.__name__ + "." + m.name)
        assert "torch" not in sys.modules, "torch was imported"
        assert "ray" not in sys.modules, "ray was imported"
        print("ok")
    """)], capture_output=True, text=True)
    assert r.returncode == 0 and "ok" in r.stdout, r.stderr


def test_api_and_cli_run_with_torch_unavailable():
    r = _run("""
        import json, corrkit
        res = corrkit.apcr(samples_per_class=1, steps=1, execution=corrkit.Execution(device="cpu"))
        print(json.dumps({"shape": list(res.apcr.shape)}))
        from corrkit.cli.main import app
        from typer.testing import CliRunner
        out = CliRunner().invoke(app, ["bundle", "info", "--json"])
        print(out.output)
    """)
    assert r.returncode == 0, r.stderr
    first, rest = r.stdout.split("\n", 1)
    assert json.loads(first)["shape"] == [100, 10]
    assert json.loads(rest)["metrics"]["classifier_test_accuracy"] > 0


def test_torch_commands_say_which_extra():
    r = _run("""
        from corrkit.cli.main import app
        from typer.testing import CliRunner
        out = CliRunner().invoke(app, ["export", "bundle"])
        print(out.exit_code, out.output)
    """)
    assert r.stdout.startswith("1 ") and "corrkit[train]" in r.stdout, r.stdout + r.stderr


def test_lint_rule_bans_torch_outside_export():
    import pathlib

    cfg = (pathlib.Path(__file__).parents[1] / "pyproject.toml").read_text()
    assert '"torch".msg' in cfg and '"export/**" = ["TID251"]' in cfg


def test_ray_flag_without_ray_says_which_extra():
    r = subprocess.run([sys.executable, "-c", NO_RAY + textwrap.dedent("""
        import corrkit
        from corrkit.cli.main import app
        from corrkit.errors import MissingExtraError
        from typer.testing import CliRunner
        out = CliRunner().invoke(app, ["apcr", "--ray", "local", "--samples-per-class", "1", "--steps", "1"])
        print(out.exit_code, out.output.strip())
        try:
            corrkit.apcr(samples_per_class=1, steps=1, execution=corrkit.Execution(executor="ray"))
        except MissingExtraError as exc:
            print("api:", exc)
    """)], capture_output=True, text=True)
    first, api = r.stdout.splitlines()[:2]
    assert first.startswith("1 error: ") and "pip install 'corrkit[ray]'" in first, r.stdout + r.stderr
    assert api.startswith("api: ") and "corrkit[ray]" in api
