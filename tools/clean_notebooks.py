"""Clean stage notebooks the one way the project commits them: nbdev's `clean_nb` with the project's
`[tool.nbdev]` settings (execution counts and volatile metadata stripped, `tags` kept) plus cleared outputs,
serialised exactly as `nbdev-clean` writes a notebook.

Two users, one rule, so a notebook saved from JupyterLab has the same bytes as the committed one:

- `python tools/clean_notebooks.py [NOTEBOOK ...]` rewrites notebooks in place (default: every notebook under
  `nbs/`); `--check` only reports. The pre-commit hook runs it.
- `pre_save_hook` is installed by `jupyter_server_config.py` (`make lab`): every save of a notebook under `nbs/`
  writes the clean notebook to disk, while the browser session keeps its outputs. A saved, unchanged notebook keeps
  its hash, so `dvc repro` does not rerun its stage.

Only the standard library is imported at module level: the Jupyter server imports this file at start-up.
"""
import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def nbs_dir(root: Path = ROOT) -> Path:
    "The notebook folder named by `[tool.nbdev] nbs_path` (default `nbs`)."
    import tomllib
    cfg = tomllib.loads((root / "pyproject.toml").read_text()).get("tool", {}).get("nbdev", {})
    return (root / cfg.get("nbs_path", "nbs")).resolve()


def is_stage_notebook(path: Path, root: Path = ROOT) -> bool:
    "A notebook under `nbs/`, outside hidden or underscore folders (as nbdev skips them)."
    path, nbs = Path(path).resolve(), nbs_dir(root)
    if path.suffix != ".ipynb" or not path.is_relative_to(nbs):
        return False
    return not any(part.startswith((".", "_")) for part in path.relative_to(nbs).parts[:-1])


def clean(nb: dict, root: Path = ROOT) -> dict:
    "The clean form of notebook `nb` (a plain dict), as a new plain dict in nbdev's canonical layout."
    from fastcore.nbio import nb2str
    from nbdev.clean import clean_nb
    from nbdev.config import get_config

    cfg = get_config(path=root)
    nb = json.loads(json.dumps(nb))  # a private copy
    clean_nb(nb, cfg.clear_all, cfg.get("allowed_metadata_keys") or [], cfg.get("allowed_cell_metadata_keys") or [],
             cfg.clean_ids, cfg.get("allowed_out_metadata_keys") or [])
    for cell in nb["cells"]:
        if cell.get("cell_type") == "code":
            cell["outputs"] = []
    return json.loads(nb2str(nb))


def clean_text(text: str, root: Path = ROOT) -> str:
    "The clean notebook file contents for notebook JSON `text`."
    from fastcore.nbio import nb2str
    return nb2str(clean(json.loads(text), root))


def pre_save_hook(model, path, contents_manager, **kwargs):
    "Jupyter `ContentsManager.pre_save_hook`: write notebooks under `nbs/` clean; leave everything else alone."
    if model.get("type") != "notebook" or not isinstance(model.get("content"), dict):
        return
    os_path = Path(contents_manager.root_dir, path.strip("/"))
    if not is_stage_notebook(os_path):
        return
    model["content"] = clean(model["content"])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("notebooks", nargs="*", type=Path, help="default: every notebook under nbs/")
    parser.add_argument("--check", action="store_true", help="report notebooks that are not clean; change nothing")
    args = parser.parse_args(argv)
    paths = args.notebooks or sorted(p for p in nbs_dir().rglob("*.ipynb") if is_stage_notebook(p))
    dirty = []
    for path in paths:
        text = path.read_text(encoding="utf-8")
        new = clean_text(text)
        if new != text:
            dirty.append(path)
            if not args.check:
                path.write_text(new, encoding="utf-8")
    for path in dirty:
        print(f"{'not clean' if args.check else 'cleaned'}: {path}")
    return 1 if dirty and args.check else 0


if __name__ == "__main__":
    sys.exit(main())
