"""pre-commit hook: `src/` must be exactly what `nbdev-export` writes from the notebooks.

Runs `nbdev-export` and fails, naming the files, when it changed anything under the library folder; the export is
left in place, so staging it (`git add src/`) and committing again is the fix. Works the same in a commit (staged
state) and in `pre-commit run --all-files` (working tree), because it compares the folder before and after.
"""
import hashlib
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def snapshot(folder: Path) -> dict[str, str]:
    return {p.relative_to(ROOT).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*.py")) if "__pycache__" not in p.parts}


def main() -> int:
    lib = ROOT / tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["nbdev"]["lib_path"]
    before = snapshot(lib)
    subprocess.run(["nbdev-export"], cwd=ROOT, check=True)
    after = snapshot(lib)
    changed = sorted(f for f in before.keys() | after.keys() if before.get(f) != after.get(f))
    if changed:
        print("src/ was out of sync with the notebooks; nbdev-export has now rewritten:", *changed, sep="\n  ")
        print("Review and stage them (git add src/), then commit again.")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
