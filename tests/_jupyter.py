"""Start JupyterLab on a project as `make lab` does, on a free loopback port, for the tests that talk to it."""
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from conftest import VENV_BIN


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Lab:
    url: str
    token: str
    log: Path

    def api(self, path: str) -> str:
        return f"{self.url}/api/{path.lstrip('/')}"


def request(lab: "Lab", method: str, path: str, body=None):
    "Call the Jupyter REST API; returns the decoded JSON answer (None when empty)."
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(f"{lab.api(path)}?token={lab.token}", data=data, method=method,
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=60) as answer:
        text = answer.read()
    return json.loads(text) if text else None


def shutdown_kernels(lab: "Lab"):
    "Stop the kernels the server started (they run in their own process groups)."
    try:
        for kernel in request(lab, "GET", "kernels"):
            request(lab, "DELETE", f"kernels/{kernel['id']}")
    except OSError:
        pass


def lab_command(port: int, token: str) -> list[str]:
    "The `make lab` command (notebook dir and the project's config file), headless on a loopback port."
    cmd = [sys.executable, "-m", "jupyterlab", "--notebook-dir=nbs", "--config=jupyter_server_config.py",
           "--no-browser", "--ip=127.0.0.1", f"--port={port}", "--ServerApp.port_retries=0",
           f"--IdentityProvider.token={token}"]
    return cmd + (["--allow-root"] if os.geteuid() == 0 else [])


@contextmanager
def jupyter_lab(project: Path, scratch: Path, timeout: float = 90, lab_settings: dict | None = None):
    """JupyterLab serving `project`/nbs with the project's server config. JUPYTER_CONFIG_DIR, JUPYTER_DATA_DIR and
    the lab's user settings point at `scratch`, so no user configuration leaks in; the project's own config file is
    passed explicitly. `lab_settings` maps a settings id (`@jupyterlab/notebook-extension:tracker`) to user settings."""
    port, token = free_port(), secrets.token_hex(16)
    env = {**os.environ, "PATH": f"{VENV_BIN}{os.pathsep}{os.environ['PATH']}", "TF_CPP_MIN_LOG_LEVEL": "2",
           "JUPYTER_CONFIG_DIR": str(scratch / "config"), "JUPYTER_DATA_DIR": str(scratch / "data"),
           "JUPYTER_RUNTIME_DIR": str(scratch / "runtime"), "JUPYTERLAB_SETTINGS_DIR": str(scratch / "settings"),
           "JUPYTERLAB_WORKSPACES_DIR": str(scratch / "workspaces")}
    scratch.mkdir(parents=True, exist_ok=True)
    for plugin, values in (lab_settings or {}).items():
        package, name = plugin.split(":")
        path = scratch / "settings" / package / f"{name}.jupyterlab-settings"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(values))
    log = scratch / "jupyter.log"
    with open(log, "w") as out:
        proc = subprocess.Popen(lab_command(port, token), cwd=project, env=env, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
    lab = Lab(f"http://127.0.0.1:{port}", token, log)
    try:
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"JupyterLab exited ({proc.returncode}):\n{log.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(f"{lab.api('status')}?token={token}", timeout=2):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"JupyterLab did not answer in {timeout} s:\n{log.read_text()[-3000:]}")
                time.sleep(0.3)
        yield lab
    finally:
        shutdown_kernels(lab)
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
