"""Give a temporary project copy this environment as its `.venv`, so Makefile targets and hooks run in it with
nothing installed."""
import os
import shutil
from pathlib import Path

from conftest import VENV_BIN


def link_env(project: Path) -> Path:
    "Link `project/.venv` to the environment that holds the project's tools (pre-commit, nbdev, ruff)."
    tool = shutil.which("pre-commit", path=f"{VENV_BIN}{os.pathsep}{os.environ['PATH']}")
    assert tool, "pre-commit is not installed: run `make env`"
    env = Path(tool).parents[1]
    (project / ".venv").symlink_to(env)
    with open(project / ".git" / "info" / "exclude", "a") as f:
        f.write(".venv\n")
    return env
