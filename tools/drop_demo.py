"""Leave the example business out of a project that works on its own data.

Removes the `demo_data` stage from dvc.yaml (and its entry in dvc.lock), the `demo_data:` section of params.yaml,
what the stage wrote (data/external/crm.sqlite, data/external/events/ and its executed notebook), the monitor's history
of the demo's batches (reports/monitoring/history.csv, drift.csv, data/monitoring/: your batches start it anew) and the CI small
sample's override of the stage's size (`-S demo_data.…` in .github/workflows/ci.yml). The rest of the
pipeline is untouched; `gather:` in params.yaml must then name your own sources (README: "Use your own data"), and
`ml-lifecycle check` says so until it does. The notebook nbs/02_demo_data.ipynb stays, outside the pipeline: it is
the simulator the template's tests and `make bench` use, and a worked example of generating test data.

Run by `make no-demo`, or by copier for a new project whose answer to `demo` is no. Running it again changes nothing.
Usage: python tools/drop_demo.py [project folder, default: the current one]
"""
from __future__ import annotations

import shutil
import sys
from pathlib import Path

STAGE = "demo_data"
WORKFLOW = ".github/workflows/ci.yml"
OUTPUTS = ["data/external/crm.sqlite", "data/external/events", f"reports/notebooks/02_{STAGE}.ipynb",
           # the monitor's history is persistent: the demo's batches must not open the history of your own
           "reports/monitoring/history.csv", "reports/monitoring/drift.csv", "data/monitoring"]


def without_block(text: str, key: str, indent: int) -> tuple[str, bool]:
    """`text` (YAML) without the mapping entry `key` at `indent` and everything nested under it (its comments
    included); the blank lines after it stay. Plain text editing, so every other comment is kept."""
    lines = text.splitlines(keepends=True)
    head = " " * indent + key + ":"
    start = next((i for i, line in enumerate(lines) if line.startswith(head)), None)
    if start is None:
        return text, False
    last = start
    for i in range(start + 1, len(lines)):
        stripped = lines[i].strip()
        if stripped and len(lines[i]) - len(lines[i].lstrip()) <= indent:
            break
        last = i if stripped else last
    after = lines[last + 1:]
    if start and not lines[start - 1].strip() and after and not after[0].strip():
        after = after[1:]   # one blank line between the neighbours, as before
    return "".join(lines[:start] + after), True


def drop_demo(root: Path) -> list[str]:
    "Remove the demo stage, its params and its outputs from the project at `root`; return what changed."
    changed = []
    for name, indent in [("dvc.yaml", 2), ("dvc.lock", 2), ("params.yaml", 0)]:
        path = root / name
        if path.is_file():
            text, found = without_block(path.read_text(), STAGE, indent)
            if found:
                path.write_text(text)
                changed.append(f"{name}: '{STAGE}' removed")
    for output in OUTPUTS:
        path = root / output
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()
        else:
            continue
        changed.append(f"{output} deleted")
    workflow = root / WORKFLOW
    if workflow.is_file():   # `dvc exp run -S demo_data.n_customers=…` would name a parameter that is gone
        lines = workflow.read_text().splitlines(keepends=True)
        kept = [line for line in lines if not line.strip().startswith(f"-S {STAGE}.")]
        if kept != lines:
            workflow.write_text("".join(kept))
            changed.append(f"{WORKFLOW}: the small sample's '{STAGE}' override removed")
    ignore = root / "data/external/.gitignore"
    if ignore.is_file():
        kept = [line for line in ignore.read_text().splitlines() if line not in ("/crm.sqlite", "/events")]
        if kept != ignore.read_text().splitlines():
            ignore.write_text("".join(f"{line}\n" for line in kept))
            changed.append("data/external/.gitignore: the demo's entries removed")
    return changed


def main(argv: list[str]) -> int:
    root = Path(argv[1] if len(argv) > 1 else ".").resolve()
    if not (root / "dvc.yaml").is_file():
        print(f"error: {root} holds no dvc.yaml: run this in the project folder", file=sys.stderr)
        return 2
    changed = drop_demo(root)
    try:   # a check where PyYAML is at hand (the project's environment, copier's)
        import yaml
        stages = yaml.safe_load((root / "dvc.yaml").read_text())["stages"]
        assert STAGE not in stages and STAGE not in (yaml.safe_load((root / "params.yaml").read_text()) or {})
    except ImportError:
        pass
    print("\n".join(changed) if changed else "the demo is already left out: nothing to do")
    if changed:
        print("next: point gather: in params.yaml at your own sources (README: Use your own data), then "
              "`ml-lifecycle check`")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
