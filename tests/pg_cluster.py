"""A private PostgreSQL cluster that checks passwords (SCRAM), one per test session.

The shared test cluster trusts 127.0.0.1, so a wrong password is accepted there and can
never be told apart. This one is made with ``initdb -A scram-sha-256`` in a temporary
directory, on a free port, and removed afterwards (about two seconds). Where
PostgreSQL's server binaries are not installed there is none (None). initdb refuses to
run as root, so under root the cluster runs as the ``postgres`` system user.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

#: the superuser's password; the cluster listens on 127.0.0.1 only and lives for one session
SCRAM_PASSWORD = "correct horse battery staple"


def _binary(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return candidates[-1] if candidates else None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def password_cluster(superuser_password: str = SCRAM_PASSWORD) -> Iterator[str | None]:
    """The cluster's superuser URL, without the password; None where none can start."""
    initdb, pg_ctl = _binary("initdb"), _binary("pg_ctl")
    runuser = shutil.which("runuser")
    if initdb is None or pg_ctl is None or (os.geteuid() == 0 and runuser is None):
        yield None
        return
    as_user = [runuser, "-u", "postgres", "--"] if os.geteuid() == 0 and runuser else []
    root = Path(tempfile.mkdtemp(prefix="roster-pg-"))
    data, password_file, port = root / "data", root / "password", _free_port()
    password_file.write_text(superuser_password, encoding="utf-8")
    if as_user:
        shutil.chown(root, "postgres")
        shutil.chown(password_file, "postgres")
    options = (
        f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off"
        " -c shared_buffers=16MB -c max_connections=40"
    )

    def run(*command: str) -> None:
        subprocess.run([*as_user, *command], check=True, capture_output=True, timeout=60)

    try:
        run(
            initdb,
            "-D",
            str(data),
            "-A",
            "scram-sha-256",
            "-U",
            "postgres",
            "--no-sync",
            f"--pwfile={password_file}",
        )
        run(pg_ctl, "-D", str(data), "-o", options, "-w", "-l", str(root / "log"), "start")
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired):
        shutil.rmtree(root, ignore_errors=True)
        yield None
        return
    try:
        yield f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres"
    finally:
        run(pg_ctl, "-D", str(data), "-m", "immediate", "-w", "stop")
        shutil.rmtree(root, ignore_errors=True)
