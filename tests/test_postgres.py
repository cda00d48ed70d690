"""A real PostgreSQL source. A throw-away server (Debian's `postgresql` package, which .ci/run installs) holds a table
behind password authentication; gather reads it, through its Python API and through the real command, with
params.yaml naming a URL without password and the password coming from outside the project's files (PGPASSWORD in
the environment or in a git-ignored `.env`, a pgpass file, or the whole URL from an environment variable). The
password appears in no file the project writes. A URL holding a password is refused by `ml-lifecycle check`."""
import glob
import os
import pwd
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conftest import copy_project, run, set_params
from ml_lifecycle import catalog
from ml_lifecycle.stages import gather
from ml_lifecycle.params import declared_view
from ml_lifecycle.tables import read_table
from ml_lifecycle.check import toy_project

INITDB = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"),
                key=lambda p: [int(n) for n in Path(p).parts[-3].split(".") if n.isdigit()])
AS_ROOT = os.geteuid() == 0
ROLE, DATABASE, TABLE = "analyst", "crm", "clients"
QUERY = f"SELECT * FROM {TABLE} ORDER BY client_id"

# The project's stages pointed at the PostgreSQL table (a label column, no event history), as a team's own data.
OWN_DATA = {("problem", "id_column"): "client_id", ("problem", "label"): "subscribed", ("problem", "positive_class"): "yes",
            ("problem", "cutoff_date"): None, ("problem", "horizon_days"): None, ("problem", "active_window_days"): None,
            ("validate", "tables"): [TABLE], ("preprocess", "units"): TABLE, ("preprocess", "event_history"): None,
            ("preprocess", "valid_ranges"): {}, ("features", "categorical"): ["job"], ("evaluate", "segments"): ["job"]}


def clients() -> pd.DataFrame:
    "The table the server holds, as pandas reads it back."
    rng = np.random.default_rng(17)
    n = 40
    return pd.DataFrame({"client_id": np.arange(1, n + 1, dtype="int64"), "age": rng.integers(18, 90, n),
                         "balance": rng.normal(1500, 400, n).round(2), "job": rng.choice(["admin", "technician"], n),
                         "subscribed": rng.choice(["yes", "no"], n)})


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server():
    """A PostgreSQL cluster in a temporary folder, listening on a free port of 127.0.0.1 and asking every TCP client
    for its password (scram-sha-256), with role `analyst` owning database `crm` and its table `clients`. Stopped and
    removed at the end. As root, the server commands run as the `postgres` user (initdb refuses root)."""
    if not INITDB:
        pytest.skip("no PostgreSQL server binaries (/usr/lib/postgresql/*/bin/initdb and pg_ctl): "
                    "apt-get install -y postgresql (.ci/run does)")
    if AS_ROOT and not (shutil.which("runuser") and _user_exists("postgres")):
        pytest.skip("running as root, and initdb refuses root: needs runuser and the postgres user")
    import psycopg
    from psycopg import sql
    bin_dir = Path(INITDB[-1]).parent
    folder = Path(tempfile.mkdtemp(prefix="pg-source-"))   # not under pytest's root-only tmp folders: postgres reads it
    superuser_password, password = secrets.token_hex(16), "pw" + secrets.token_hex(16)
    (folder / "superuser").write_text(superuser_password + "\n")
    as_server = ["runuser", "-u", "postgres", "--"] if AS_ROOT else []
    if AS_ROOT:
        owner = pwd.getpwnam("postgres")
        for path in (folder, folder / "superuser"):
            os.chown(path, owner.pw_uid, owner.pw_gid)
    data, port = folder / "data", free_port()

    def server_command(*args):
        result = subprocess.run(as_server + [str(bin_dir / args[0]), *map(str, args[1:])], cwd=folder,
                                capture_output=True, text=True)
        assert result.returncode == 0, f"{args[0]} failed:\n{result.stdout}\n{result.stderr}\n" + \
            ((folder / "server.log").read_text() if (folder / "server.log").is_file() else "")

    server_command("initdb", "-D", data, "-U", "postgres", "--pwfile", folder / "superuser", "--auth-local=reject",
                   "--auth-host=scram-sha-256", "--no-locale", "-E", "UTF8", "--no-sync", "--no-instructions")
    try:
        server_command("pg_ctl", "start", "-D", data, "-l", folder / "server.log", "-w", "-t", "60", "-o",
                       f"-h 127.0.0.1 -p {port} -k {folder} -c fsync=off -c password_encryption=scram-sha-256")
        connect = dict(host="127.0.0.1", port=port, connect_timeout=10)
        with psycopg.connect(**connect, user="postgres", password=superuser_password, dbname="postgres",
                             autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(sql.Identifier(ROLE), sql.Literal(password)))
            conn.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(sql.Identifier(DATABASE), sql.Identifier(ROLE)))
        with psycopg.connect(**connect, user=ROLE, password=password, dbname=DATABASE) as conn:
            conn.execute(f"CREATE TABLE {TABLE} (client_id integer PRIMARY KEY, age integer, balance double precision,"
                         " job text, subscribed text)")
            with conn.cursor() as cur:
                cur.executemany(f"INSERT INTO {TABLE} VALUES (%s, %s, %s, %s, %s)",
                                [tuple(row) for row in clients().astype(object).itertuples(index=False)])
        with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
            psycopg.connect(**connect, user=ROLE, password="wrong", dbname=DATABASE)
        yield {"url": f"postgresql+psycopg://{ROLE}@127.0.0.1:{port}/{DATABASE}", "port": port, "password": password,
               "folder": folder}
    finally:
        if (data / "postmaster.pid").exists():
            server_command("pg_ctl", "stop", "-D", data, "-m", "immediate", "-w")
        shutil.rmtree(folder, ignore_errors=True)


def _user_exists(name: str) -> bool:
    try:
        pwd.getpwnam(name)
        return True
    except KeyError:
        return False


@pytest.fixture
def no_outside_password(monkeypatch, tmp_path):
    "No password reaches libpq unless a test gives it: no PGPASSWORD, and a pgpass file that does not exist."
    monkeypatch.delenv("PGPASSWORD", raising=False)
    monkeypatch.setenv("PGPASSFILE", str(tmp_path / "no-pgpass"))


def files_holding(folder: Path, secret: str, leave_out=(".env",)) -> list[str]:
    "Every file under `folder` (but those named in `leave_out`) whose bytes contain `secret`."
    return [str(p.relative_to(folder)) for p in folder.rglob("*")
            if p.is_file() and p.name not in leave_out and secret.encode() in p.read_bytes()]


@pytest.mark.parametrize("how", ["PGPASSWORD", "pgpass", "url_env"])
def test_gather_reads_a_postgres_table_through_its_python_api(server, no_outside_password, monkeypatch, tmp_path, how):
    source = {"query": QUERY, "required_columns": ["client_id", "subscribed"]}
    if how == "PGPASSWORD":
        monkeypatch.setenv("PGPASSWORD", server["password"])
        source["url"] = server["url"]
    elif how == "pgpass":   # ~/.pgpass, here at the place PGPASSFILE names
        pgpass = tmp_path / "no-pgpass"
        pgpass.write_text(f"127.0.0.1:{server['port']}:{DATABASE}:{ROLE}:{server['password']}\n")
        pgpass.chmod(0o600)
        source["url"] = server["url"]
    else:                   # the whole URL, password included, from an environment variable
        monkeypatch.setenv("CLIENTS_URL", server["url"].replace(f"{ROLE}@", f"{ROLE}:{server['password']}@"))
        source["url_env"] = "CLIENTS_URL"
    root, values = toy_project({"gather": {TABLE: source}}, tmp_path / "project")
    gather.check_inputs(values, root)
    summary = gather.run(declared_view("gather", values, root), root)
    assert summary == {TABLE: {"rows": 40, "columns": 5}}
    pd.testing.assert_frame_equal(read_table(root / catalog.raw_table(TABLE), "test"), clients())
    assert files_holding(root, server["password"]) == []


def test_gather_without_the_password_names_the_source(server, no_outside_password, tmp_path):
    root, values = toy_project({"gather": {TABLE: {"url": server["url"], "query": QUERY}}}, tmp_path / "project")
    with pytest.raises(gather.StageError) as failure:
        gather.run(declared_view("gather", values, root), root)
    error = failure.value
    assert error.field == f"gather.{TABLE}.url" and "no password supplied" in error.problem, error
    assert "PGPASSWORD" in error.problem and error.source == server["url"], error
    assert not (root / catalog.raw_table(TABLE)).exists()


def own_data_project(folder: Path, url: str) -> Path:
    "A copy of the project whose stages read the PostgreSQL table `clients` as its only source."
    project = copy_project(folder)
    set_params(project, {**OWN_DATA, ("gather",): {TABLE: {"url": url, "query": QUERY,
                                                             "required_columns": ["client_id", "subscribed"]}}})
    return project


def test_the_gather_command_reads_postgres_with_the_password_from_the_environment_or_dotenv(
        server, no_outside_password, monkeypatch, tmp_path):
    project = own_data_project(tmp_path / "project", server["url"])
    assert server["password"] not in (project / "params.yaml").read_text()
    for where in ("environment", ".env"):
        if where == "environment":
            monkeypatch.setenv("PGPASSWORD", server["password"])
        else:
            monkeypatch.delenv("PGPASSWORD")
            shutil.rmtree(project / "data" / "raw")
            (project / ".env").write_text(f"# credentials, never committed\nPGPASSWORD={server['password']}\n")
            assert run("git check-ignore .env", project).stdout.strip() == ".env"
            assert files_holding(project, server["password"], leave_out=()) == [".env"]   # the search finds it
        result = run("ml-lifecycle run gather", project)
        output = result.stdout + result.stderr
        assert "stage 'gather' done" in output and server["password"] not in output, (where, output)
        pd.testing.assert_frame_equal(read_table(project / catalog.raw_table(TABLE), "test"), clients())
        assert (project / catalog.executed_notebook("03_gather.ipynb")).is_file()
        assert files_holding(project, server["password"]) == [], where
    assert ".env" not in run("git status --porcelain", project).stdout


def test_a_password_in_params_is_refused_by_the_check_in_seconds(tmp_path):
    password = "pw" + secrets.token_hex(16)
    project = own_data_project(tmp_path / "project", f"postgresql+psycopg://{ROLE}:{password}@db.example.com:5432/crm")
    started = time.perf_counter()
    result = run("ml-lifecycle check", project, check=False)
    seconds = time.perf_counter() - started
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    assert password not in output
    error = next((line for line in output.splitlines() if line.startswith("error: ")), "")
    for fragment in ("stage 'gather'", f"{ROLE}:***@db.example.com", f"field 'gather.{TABLE}.url'", "PGPASSWORD",
                     "~/.pgpass", ".env", f"url_env: {TABLE.upper()}_URL",
                     f"url: postgresql+psycopg://{ROLE}@db.example.com:5432/crm"):
        assert fragment in error, f"{fragment!r} missing from: {error or output}"
    assert seconds < 30, f"the check took {seconds:.1f}s"
    assert files_holding(project, password, leave_out=("params.yaml",)) == []
