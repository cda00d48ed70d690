"""The in-process engine (`ml_lifecycle.execution`) against a Jupyter kernel: what a kernel records and what it
isolates, for notebooks built here and run through papermill in this process (issue 18, item 5)."""
import gc
import json
import logging
import os
import sys
import warnings
import weakref

import matplotlib
import nbformat
import numpy as np
import pandas as pd
import papermill as pm
import pytest
from traitlets.config import Config

from ml_lifecycle import execution
from ml_lifecycle.cli import strip_volatile
from ml_lifecycle.execution import ENGINE


def notebook(*sources):
    "A notebook of code cells `sources`, for a Python 3 kernel."
    nb = nbformat.v4.new_notebook(metadata={"kernelspec": {"name": "python3", "display_name": "python3",
                                                           "language": "python"}})
    nb.cells = [nbformat.v4.new_code_cell(source) for source in sources]
    return nb


def run(nb, folder, engine=ENGINE, cwd=True):
    """The outputs of each cell of `nb` run by papermill with `engine` (None: a `python3` kernel), in `folder` (or,
    `cwd` False, in this process's working directory), as `cli.strip_volatile` records them."""
    kernel = Config()
    kernel.KernelManager.transport = "ipc"   # no TCP warning from the kernel
    source, target = folder / "in.ipynb", folder / "out.ipynb"
    nbformat.write(nb, source)
    try:
        pm.execute_notebook(str(source), str(target), engine_name=engine, kernel_name="python3", progress_bar=False,
                            cwd=str(folder) if cwd else None, config=kernel)
    finally:
        record = json.loads(strip_volatile(target, folder).read_text())
    return [cell["outputs"] for cell in record["cells"]]


def text(outputs, name="stdout"):
    "What a cell's outputs hold of stream `name`."
    return "".join("".join(o["text"]) for o in outputs if o["output_type"] == "stream" and o["name"] == name)


def shapes(outputs):
    "Each output's type and mime types: a figure's PNG bytes aside."
    return [(o["output_type"], sorted(o.get("data", {}))) for o in outputs]


# 1. logging ----------------------------------------------------------------------------------------------------

def test_a_log_handler_records_each_cell_s_lines_under_that_cell(tmp_path):
    "A handler made in one cell keeps `sys.stdout`/`sys.stderr`: later cells' lines are still theirs, as in a kernel."
    nb = notebook("import logging, sys\nlogging.basicConfig(format='%(levelname)s %(message)s')\n"
                  "toy = logging.getLogger('toy')\ntoy.addHandler(logging.StreamHandler(sys.stdout))\ntoy.warning('first')",
                  "toy.warning('second')",
                  "print('third')\nlogging.warning('third')")
    here = run(nb, tmp_path)
    assert [(text(o), text(o, "stderr")) for o in here] == [
        ("first\n", "WARNING first\n"), ("second\n", "WARNING second\n"), ("third\n", "WARNING third\n")]
    assert here == run(nb, tmp_path, engine=None)


# 2. the notebook's folder on sys.path --------------------------------------------------------------------------

def test_a_module_beside_the_notebook_imports_afresh_each_run(tmp_path):
    "`import helper` finds the notebook folder's helper.py (the kernel's '' entry); the next run imports it again."
    (tmp_path / "toy_helper.py").write_text("VALUE = 'one'\n")
    nb, path = notebook("import toy_helper\nprint(toy_helper.VALUE)"), list(sys.path)
    assert text(run(nb, tmp_path)[0]) == "one\n"
    assert sys.path == path and "toy_helper" not in sys.modules
    (tmp_path / "toy_helper.py").write_text("VALUE = 'three'\n")   # another length: no stale bytecode
    assert text(run(nb, tmp_path)[0]) == "three\n" == text(run(nb, tmp_path, engine=None)[0])


# 3. figures without %matplotlib inline -------------------------------------------------------------------------

def test_plt_show_records_a_png_without_the_magic(tmp_path, monkeypatch):
    "The inline backend is the default, as ipykernel makes it: `plt.show()` and a figure are PNG outputs, every run."
    monkeypatch.delenv("MPLBACKEND", raising=False)
    nb = notebook("import matplotlib.pyplot as plt\nplt.plot([1, 2])\nplt.show()\nprint('shown')",
                  "from matplotlib.figure import Figure\nfigure = Figure()\nfigure.subplots().plot([2, 1])\nfigure")
    first, again, kernel = run(nb, tmp_path), run(nb, tmp_path), run(nb, tmp_path, engine=None)
    assert shapes(first[0]) == [("display_data", ["image/png", "text/plain"]), ("stream", [])]
    assert shapes(first[1]) == [("execute_result", ["image/png", "text/plain"])]
    assert first == again, "a second run in the same process records other figures"
    assert [shapes(o) for o in first] == [shapes(o) for o in kernel]


# 4. nothing keeps the shell --------------------------------------------------------------------------------------

def test_a_run_leaves_its_shell_and_namespace_collectable(tmp_path, monkeypatch):
    "IPython registers every shell with `atexit`, and a failed cell leaves its traceback in `sys`: neither may keep it."
    shells, probes, fresh = [], [], execution.fresh_shell

    def watched():
        shell, previous = fresh()
        shells.append(weakref.ref(shell))
        shell.user_ns["probes"] = probes   # the notebook appends a weak reference to its large array
        return shell, previous

    monkeypatch.setattr(execution, "fresh_shell", watched)
    nb = notebook("import weakref\nimport numpy as np\nbig = np.ones(25_000_000)\nprobes.append(weakref.ref(big))",
                  "import matplotlib.pyplot as plt\nplt.plot(big[:10])\nplt.show()",
                  "raise ValueError('the last cell fails')")
    for runs in range(1, 4):
        with pytest.raises(pm.PapermillExecutionError):
            run(nb, tmp_path)
        gc.collect()
        assert len(shells) == len(probes) == runs
        assert [ref() for ref in shells + probes] == [None] * 2 * runs, "a run's shell or its 200 MB array is still alive"


# 5. what a run changes in the process is undone -----------------------------------------------------------------

STATE = {   # a cell that changes the process, and what it changes
    "pandas option": ("import pandas as pd\npd.set_option('display.precision', 2)", lambda: pd.get_option("display.precision")),
    "environment": ("import os\nos.environ['TOY_ENGINE_ADDED'] = '1'\ndel os.environ['TOY_ENGINE_KEPT']",
                    lambda: (os.environ.get("TOY_ENGINE_ADDED"), os.environ.get("TOY_ENGINE_KEPT"))),
    "warning filters": ("import warnings\nwarnings.simplefilter('ignore')", lambda: list(warnings.filters)),
    "sys.path": ("import sys\nsys.path.insert(0, '/nowhere')", lambda: list(sys.path)),
    "working directory": ("import os\nos.chdir('/')", os.getcwd),
    "root logger": ("import logging\nlogging.getLogger().addHandler(logging.NullHandler())\n"
                    "logging.getLogger().setLevel(logging.DEBUG)",
                    lambda: (logging.getLogger().handlers[:], logging.getLogger().level)),
    "matplotlib rcParams": ("import matplotlib\nmatplotlib.rcParams['lines.linewidth'] = 7",
                            lambda: matplotlib.rcParams["lines.linewidth"]),
    "numpy print options": ("import numpy as np\nnp.set_printoptions(precision=2)", np.get_printoptions),
}


@pytest.mark.parametrize("what", STATE)
def test_a_run_restores_what_its_cells_changed(what, tmp_path, monkeypatch):
    "A kernel's changes end with the kernel: after a run, the process is as it was (no `cwd`, so papermill's own"
    " change of directory does not undo the cell's)."
    monkeypatch.setenv("TOY_ENGINE_KEPT", "kept")
    source, probe = STATE[what]
    before = probe()
    run(notebook(source, "print('ran')"), tmp_path, cwd=False)
    assert probe() == before, f"the run's {what} outlived it"


def test_a_later_run_sees_a_kernel_s_defaults(tmp_path):
    "A run that sets options does not change the next run's record."
    table = "import pandas as pd, numpy as np\nprint(pd.DataFrame({'x': [1 / 3]}), np.array([1 / 3]))"
    fresh = run(notebook(table), tmp_path)
    run(notebook("import pandas as pd, numpy as np\npd.set_option('display.precision', 1)\n"
                 "np.set_printoptions(precision=1)"), tmp_path)
    assert run(notebook(table), tmp_path) == fresh
