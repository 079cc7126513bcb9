"""Processes that the orchestration tests and the backfill benchmark start, and their reliable end.

Each process starts in its own session (so its process group holds what it forks: PostgreSQL's workers,
Celery's pool, a daemon's code server); :func:`stop` signals the group and any descendant that left it
(a run worker in a session of its own), waits, then kills what is left. Use it in ``finally`` so a failing
test or an interrupted benchmark leaves nothing running. :class:`Services` keeps the processes of one test
or benchmark; :func:`start_postgres` and :func:`start_redis` run PostgreSQL and Redis on free loopback ports
in a folder of their own (Debian's packages: ``scripts/setup_services.sh``; :func:`missing_services` says
what is not installed).
"""

from __future__ import annotations

import glob
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

STARTUP_S = 60.0


def start(argv: list[str], log_path: Path, **popen_kw) -> subprocess.Popen:
    """Start ``argv`` in a new session, stdout and stderr to ``log_path``, no stdin."""
    with open(log_path, "wb") as out:
        return subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True, **popen_kw)


def _stat(pid: int) -> tuple[int, int] | None:
    """(parent pid, start time in clock ticks) of a live process, from /proc/<pid>/stat."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return int(fields[1]), int(fields[19])
    except (OSError, IndexError, ValueError):
        return None


def descendants(pid: int) -> dict[int, int]:
    """Every live process below ``pid`` (children, theirs, ...): pid -> start time (to tell a reused pid)."""
    children: dict[int, list[tuple[int, int]]] = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit() and (st := _stat(int(d.name))) is not None:
            children.setdefault(st[0], []).append((int(d.name), st[1]))
    out, todo = {}, [pid]
    while todo:
        for child, started in children.get(todo.pop(), []):
            out[child] = started
            todo.append(child)
    return out


def _signal(procs: dict[int, int], pgid: int, sig) -> None:
    for pid, started in procs.items():
        st = _stat(pid)
        if st is not None and st[1] == started:  # still the process we saw, not a reused pid
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        pass


def stop(proc: subprocess.Popen, first_signal: int = signal.SIGTERM, grace_s: float = 15.0) -> None:
    """End ``proc``, its process group and its descendants: ``first_signal``, up to ``grace_s``, then SIGKILL."""
    strays = descendants(proc.pid)
    if proc.poll() is None or strays:
        _signal(strays, proc.pid, first_signal)
        try:
            proc.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            pass
    _signal({**strays, **descendants(proc.pid)}, proc.pid, signal.SIGKILL)  # what outlived the grace period
    proc.wait()


class Services:
    """The processes one test or benchmark started, stopped together (last started first) by :meth:`stop`."""

    def __init__(self, root: Path):
        self.root = Path(root)
        self.procs: list[tuple[subprocess.Popen, int]] = []

    def start(self, name: str, argv: list[str], stop_signal: int = signal.SIGTERM, **popen_kw) -> subprocess.Popen:
        proc = start(argv, self.root / f"{name}.log", **popen_kw)
        self.procs.append((proc, stop_signal))
        return proc

    def log(self, name: str, tail: int = 3000) -> str:
        p = self.root / f"{name}.log"
        return p.read_text(errors="replace")[-tail:] if p.exists() else ""

    def wait_ready(self, name: str, proc: subprocess.Popen, ready, timeout_s: float = STARTUP_S) -> None:
        """Poll ``ready()`` (exceptions count as not ready) until true; a clear error if ``proc`` dies or time runs out."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"{name} exited with {proc.returncode}:\n{self.log(name)}")
            try:
                if ready():
                    return
            except Exception:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"{name} not ready after {timeout_s:.0f} s:\n{self.log(name)}")

    def stop(self) -> None:
        while self.procs:
            proc, sig = self.procs.pop()
            stop(proc, sig)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def postgres_binary(name: str) -> str | None:
    """A PostgreSQL server program (``initdb``, ``postgres``): Debian keeps them off PATH, in /usr/lib/postgresql."""
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return found[-1] if found else shutil.which(name)


def missing_services() -> list[str]:
    """What :func:`start_postgres` and :func:`start_redis` need and this machine lacks."""
    missing = [f"PostgreSQL's {b}" for b in ("initdb", "postgres") if not postgres_binary(b)]
    if not shutil.which("redis-server"):
        missing.append("redis-server")
    if os.geteuid() == 0:
        import pwd

        try:
            pwd.getpwnam("postgres")
        except KeyError:
            missing.append("the postgres user (initdb refuses root)")
        if not shutil.which("runuser"):
            missing.append("runuser")
    return missing


def start_postgres(services: Services, folder: Path, *, durable: bool = True) -> str:
    """initdb + postgres on a free loopback port, files in ``folder``; the libpq URL of a new ``dagster`` database.

    As root the cluster belongs to the ``postgres`` user (initdb refuses root), so ``folder`` must not be under
    a folder only root can enter (pytest's tmp_path is): use ``tempfile.mkdtemp()``. ``durable=False`` turns
    fsync off (tests); the default keeps PostgreSQL's durability settings (benchmarks). Dagster needs the
    ``postgresql+psycopg2://`` form of the URL: :func:`dagster_postgres_url`.
    """
    import psycopg2

    as_user = []
    if os.geteuid() == 0:
        import pwd

        pw = pwd.getpwnam("postgres")
        os.chown(folder, pw.pw_uid, pw.pw_gid)
        as_user = ["runuser", "-u", "postgres", "--"]
    data = Path(folder) / "data"
    subprocess.run([*as_user, postgres_binary("initdb"), "-D", str(data), "-U", "postgres", "-A", "trust", "-E",
                    "UTF8", "--no-sync", "--no-instructions"], check=True, capture_output=True, timeout=STARTUP_S)
    port = free_port()
    fast = [] if durable else ["-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off"]
    proc = services.start("postgres", [*as_user, postgres_binary("postgres"), "-D", str(data), "-p", str(port),
                                       "-k", str(folder), "-c", "listen_addresses=127.0.0.1", *fast],
                          stop_signal=signal.SIGINT)  # SIGINT: fast shutdown (SIGTERM waits for the clients)

    def connect():
        return psycopg2.connect(host="127.0.0.1", port=port, user="postgres", dbname="postgres", connect_timeout=2)

    services.wait_ready("postgres", proc, lambda: connect().close() is None)
    conn = connect()
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute("CREATE DATABASE dagster")
    conn.close()
    return f"postgresql://postgres@127.0.0.1:{port}/dagster"


def dagster_postgres_url(url: str) -> str:
    """The URL for ``storage: postgres: postgres_url`` in dagster.yaml: SQLAlchemy 2.1 reads a bare
    ``postgresql://`` as psycopg 3, while dagster-postgres brings psycopg2."""
    return url.replace("postgresql://", "postgresql+psycopg2://", 1)


def start_redis(services: Services, folder: Path) -> str:
    """redis-server on a free loopback port, no persistence, files in ``folder``; its ``redis://`` URL."""
    import redis

    port = free_port()
    proc = services.start("redis", ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                                    "--appendonly", "no", "--dir", str(folder), "--daemonize", "no"])
    services.wait_ready("redis-server", proc, lambda: redis.Redis(host="127.0.0.1", port=port, socket_timeout=1).ping())
    return f"redis://127.0.0.1:{port}"
