# The project's Jupyter server configuration, loaded by `make lab` (`jupyter lab --config=jupyter_server_config.py`).
#
# Saving a notebook under nbs/ writes it to disk clean (outputs, execution counts and volatile metadata stripped,
# papermill's `tags` kept: tools/clean_notebooks.py, the same cleaner as the pre-commit hook), while the browser
# keeps showing its outputs. A notebook that was run and saved but not edited keeps the bytes, and so the hash, it
# was committed with: `dvc repro` reruns a stage only when its code or its parameters changed.
#
# Nothing else is configured here, and JUPYTER_CONFIG_DIR is left alone.
import importlib.util
from pathlib import Path

_spec = importlib.util.spec_from_file_location(
    "_project_clean_notebooks", Path(__file__).resolve().parent / "tools" / "clean_notebooks.py")
_cleaner = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_cleaner)

c.ContentsManager.pre_save_hook = _cleaner.pre_save_hook  # noqa: F821 (`c` is given by Jupyter)
