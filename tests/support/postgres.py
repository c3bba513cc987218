"""A real, throw-away PostgreSQL server for the test suite, started from the installed binaries.

``start_postgres()`` runs ``initdb`` into a fresh temporary directory, starts the server with
``pg_ctl`` on a free 127.0.0.1 port (plus a unix socket inside the same directory) and creates
the database ``gateway_test``. The server is tuned for tests, not for durability: fsync,
synchronous commit and full-page writes are off, which is safe because the data is deleted
when the server stops.

Things this module deals with so that tests do not have to:

* CI and the development machine run as root, and PostgreSQL refuses to run as root. As root,
  every server command goes through ``runuser -u postgres --`` (or a system user
  ``sms-gateway-pg`` created on the spot when Debian's ``postgres`` user does not exist), and
  the temporary directory is handed to that user.
* ``GATEWAY_TEST_POSTGRES_URL`` points the suite at an existing server instead (a CI service
  container, say); then nothing is started and ``create_database`` creates databases there.
* The server is stopped and its directory deleted at interpreter exit even when a test
  crashes, and when the run is terminated with SIGTERM. Only a SIGKILL of the test process
  can leave one behind.
* Nothing here ever skips: when PostgreSQL cannot be started, ``PostgresUnavailable`` says
  what is missing.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import os
import pwd
import re
import shutil
import signal
import socket
import stat
import subprocess
import tempfile
import threading
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Literal

from sqlalchemy import text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

__all__ = [
    "PostgresServer",
    "PostgresUnavailable",
    "find_bindir",
    "start_postgres",
]

BINDIR_ENV = "GATEWAY_PG_BINDIR"
EXTERNAL_URL_ENV = "GATEWAY_TEST_POSTGRES_URL"
DEFAULT_DATABASE = "gateway_test"
SUPERUSER = "postgres"
FALLBACK_OS_USER = "sms-gateway-pg"
INSTALL_HINT = "install postgresql (Debian: apt-get install postgresql)"
DRIVER = "postgresql+asyncpg"

_REQUIRED_BINARIES = ("initdb", "pg_ctl", "postgres")
_START_TIMEOUT_S = 60
_PORT_ATTEMPTS = 5
# sockaddr_un.sun_path is 108 bytes on Linux; the socket file name adds ".s.PGSQL.NNNNN".
_MAX_SOCKET_DIR_LEN = 90
_DATABASE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")

# Settings appended to postgresql.conf, so that a restart keeps them.
_SERVER_SETTINGS = {
    "listen_addresses": "'127.0.0.1'",
    "max_connections": "200",
    # Test speed: nothing here has to survive a power cut.
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    # Reproducible output regardless of the machine's locale and time zone.
    "lc_messages": "'C'",
    "timezone": "'UTC'",
}
# Trust, but only over the private socket directory and loopback.
_PG_HBA = """\
# Written by tests/support/postgres.py: a throw-away test server.
local   all   all                 trust
host    all   all   127.0.0.1/32  trust
"""


class PostgresUnavailable(RuntimeError):
    """PostgreSQL could not be found, started or reached; the message says why."""


class PostgresServer:
    """A running PostgreSQL server: one this module started, or the external one in the env.

    ``url`` is a SQLAlchemy asyncpg URL of the database ``gateway_test`` (or of the external
    URL's database). ``bindir`` and ``datadir`` are ``None`` for an external server.
    """

    def __init__(
        self,
        *,
        url: str,
        port: int,
        bindir: Path | None,
        datadir: Path | None,
        root: Path | None = None,
        os_user: str | None = None,
    ) -> None:
        self.url = url
        self.port = port
        self.bindir = bindir
        self.datadir = datadir
        self._root = root
        self._os_user = os_user
        self._lock = threading.Lock()
        self._running = False  # set by _start(); an external server counts as always running
        self._removed = False
        # CREATE/DROP DATABASE run from the maintenance database of a server we started; an
        # external server is reached through the database its URL names.
        self._admin_url = url
        self._version_num: int | None = None

    @property
    def external(self) -> bool:
        """True when the server came from ``GATEWAY_TEST_POSTGRES_URL``."""
        return self._root is None

    @property
    def running(self) -> bool:
        return self.external or self._running

    @property
    def socket_dir(self) -> Path | None:
        return None if self._root is None else self._root / "s"

    @property
    def log_file(self) -> Path | None:
        return None if self._root is None else self._root / "postgres.log"

    def url_for(self, database: str) -> str:
        """The URL of another database on this server."""
        return make_url(self.url).set(database=database).render_as_string(hide_password=False)

    def create_database(
        self, name: str, *, template: str | None = None, durable: bool = False
    ) -> str:
        """Create a database (a copy of ``template``, or an empty one) and return its asyncpg
        URL. The template must have no open connections.

        ``durable``: its sessions commit synchronously (``synchronous_commit = on``, as in
        production), so that every commit acknowledged to the gateway survives
        ``stop_server("immediate")``. The server's own setting (off, for speed) acknowledges
        a commit before its WAL is written; the flush before an immediate stop cannot catch
        the commits made between it and the stop, and a busy gateway makes some: they were
        lost, and with them sends the gateway had recorded (which it then made again).

        Safe to call from sync code and from inside a running event loop: the statement runs
        on its own loop in a helper thread.
        """
        _check_database_name(name)
        statement = f'CREATE DATABASE "{name}"'
        if template is not None:
            _check_database_name(template)
            statement += f' TEMPLATE "{template}"'
        if self._server_version() >= 150000:
            # PostgreSQL 15's default strategy, WAL_LOG, writes every page of the template
            # through the WAL: ~140 ms here for a small schema. FILE_COPY copies the files and
            # checkpoints, which costs nothing with fsync off: ~20 ms.
            statement += " STRATEGY FILE_COPY"
        statements = [statement]
        if durable:
            statements.append(f'ALTER DATABASE "{name}" SET synchronous_commit = on')
        _run_admin(self._admin_url, *statements)
        return self.url_for(name)

    def drop_database(self, name: str) -> None:
        """Drop a database, disconnecting its sessions; no error if it does not exist."""
        _check_database_name(name)
        _run_admin(self._admin_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def stop(self) -> None:
        """Stop the server (immediate mode: no checkpoint, data is discarded anyway) and delete
        its temporary directory. Idempotent; a no-op for an external server."""
        with self._lock:
            if self._root is None or self._removed:
                return
            if self._running:
                self._pg_ctl_stop("immediate")
            shutil.rmtree(self._root, ignore_errors=True)
            if self._root.exists():  # e.g. a file the server was still writing: try once more
                shutil.rmtree(self._root)
            self._removed = True
            _LIVE.discard(self)

    def stop_server(self, mode: Literal["smart", "fast", "immediate"] = "fast") -> None:
        """Stop the server but keep its data, so ``start_server()`` can bring it back
        (for tests of what the gateway does while its database is down).

        ``"immediate"`` stops the server like a crash: open transactions are lost, connections
        drop and the next start runs crash recovery. Transactions that already committed
        survive, as they would in production: with ``synchronous_commit=off`` (set for speed)
        their commit records may still sit in the server's WAL buffers, so the WAL is flushed
        first (``pg_switch_wal()`` flushes everything written so far; a no-op commit would not,
        as PostgreSQL skips the flush for transactions that wrote no WAL). Without this, every
        simulated crash lost the last commits: a property of the test tuning, not of anything
        under test. Commits made between the flush and the stop are still lost, unless the
        database was created ``durable`` (:meth:`create_database`).
        """
        with self._lock:
            self._require_local("stop_server")
            if not self._running:
                return
            if mode == "immediate":
                with contextlib.suppress(PostgresUnavailable):  # already unreachable: crash on
                    _run_admin(self._admin_url, "SELECT pg_switch_wal()")
            self._pg_ctl_stop(mode)

    def start_server(self) -> None:
        """Start a server stopped with ``stop_server()``, on the same port and data."""
        with self._lock:
            self._require_local("start_server")
            if not self._running:
                self._start(attempts=1)

    def restart(self, mode: Literal["smart", "fast", "immediate"] = "fast") -> None:
        """Stop and start again on the same port with the same data. ``mode="immediate"`` is
        a crash as far as the server is concerned: it runs crash recovery on start."""
        self.stop_server(mode)
        self.start_server()

    def __repr__(self) -> str:
        where = "external" if self.external else str(self.datadir)
        return f"PostgresServer(url={self.url!r}, {where})"

    # Internals -------------------------------------------------------------------------------

    def _server_version(self) -> int:
        if self._version_num is None:
            self._version_num = int(str(_run_admin(self._admin_url, "SHOW server_version_num")))
        return self._version_num

    def _require_local(self, what: str) -> None:
        if self._root is None:
            raise PostgresUnavailable(
                f"{what}() needs a server this harness started; {EXTERNAL_URL_ENV} points at an "
                "external server it cannot control"
            )
        if self._removed:
            raise PostgresUnavailable(f"{what}(): the server was stopped and its data deleted")

    def _pg_ctl_stop(self, mode: str) -> None:
        assert self.bindir is not None
        assert self.datadir is not None
        result = _run(
            [str(self.bindir / "pg_ctl"), "stop", "-D", str(self.datadir), "-m", mode, "-w"],
            user=self._os_user,
            cwd=self._root,
            check=False,
        )
        if result.returncode != 0:
            # pg_ctl could not stop it (already dead, or stuck): make sure no postmaster of
            # ours outlives the test run.
            _kill_postmaster(self.datadir)
        self._running = False

    def _local_url(self, database: str) -> str:
        return URL.create(
            DRIVER, username=SUPERUSER, host="127.0.0.1", port=self.port, database=database
        ).render_as_string(hide_password=False)

    def _start(self, *, attempts: int) -> None:
        """Start the server, waiting until it accepts connections (``pg_ctl -w``: no sleeps).

        A fresh server gets a free port, and another if something grabbed that port between
        our probe and the server's bind. A restarted one keeps its port: URLs were handed out.
        """
        assert self.bindir is not None
        assert self.datadir is not None
        assert self._root is not None
        log_file = self._root / "postgres.log"
        fixed_port = self.port != 0
        for attempt in range(attempts):
            port = self.port if fixed_port else _free_port()
            offset = log_file.stat().st_size if log_file.exists() else 0
            result = _run(
                [
                    *(str(self.bindir / "pg_ctl"), "start", "-D", str(self.datadir)),
                    *("-l", str(log_file), "-w", "-t", str(_START_TIMEOUT_S), "-o", f"-p {port}"),
                ],
                user=self._os_user,
                cwd=self._root,
                check=False,
            )
            if result.returncode == 0:
                self.port = port
                self.url = self._local_url(DEFAULT_DATABASE)
                self._admin_url = self._local_url("postgres")
                self._running = True
                return
            log = _read_from(log_file, offset)
            _kill_postmaster(self.datadir)  # a half-started postmaster must not linger
            port_taken = "Address already in use" in log or "could not bind" in log
            if port_taken and not fixed_port and attempt + 1 < attempts:
                continue
            raise PostgresUnavailable(
                f"PostgreSQL did not start (pg_ctl exit {result.returncode}) on port {port}:\n"
                f"{(result.stderr or result.stdout).strip()}\n--- server log ---\n{log.strip()}"
            )


def start_postgres(settings: Mapping[str, str] | None = None) -> PostgresServer:
    """Start a fresh PostgreSQL server (or attach to ``GATEWAY_TEST_POSTGRES_URL``).
    ``settings``: more lines for its postgresql.conf (a benchmark's
    ``shared_preload_libraries``, say); an external server is used as it is.

    Never returns ``None`` and never skips: raises ``PostgresUnavailable`` naming what is
    missing (binaries, ``runuser``) or what failed (initdb's stderr, the server log's tail).
    """
    external = os.environ.get(EXTERNAL_URL_ENV)
    if external:
        return _attach(external)

    bindir = find_bindir()
    os_user = _service_user()
    root = Path(tempfile.mkdtemp(prefix="sms-gateway-pg-", dir=_temp_base(os_user)))
    try:
        server = _init_and_start(bindir, root, os_user, settings or {})
    except BaseException:
        shutil.rmtree(root, ignore_errors=True)
        raise
    _LIVE.add(server)
    _stop_on_sigterm()
    try:
        server.create_database(DEFAULT_DATABASE)
    except BaseException:
        server.stop()
        raise
    return server


def find_bindir() -> Path:
    """The directory holding initdb, pg_ctl and postgres.

    Looked up in order: ``GATEWAY_PG_BINDIR``; ``pg_config --bindir`` (whose answer may be a
    client-only directory, so it is checked); ``/usr/lib/postgresql/<newest>/bin`` (Debian
    keeps the server binaries off PATH); finally ``initdb`` on PATH.
    """
    override = os.environ.get(BINDIR_ENV)
    if override:
        path = Path(override)
        if not _has_server_binaries(path):
            raise PostgresUnavailable(
                f"{BINDIR_ENV}={override} does not contain {', '.join(_REQUIRED_BINARIES)}; "
                f"point it at PostgreSQL's bin directory or {INSTALL_HINT}"
            )
        return path
    candidates: list[Path] = []
    pg_config = shutil.which("pg_config")
    if pg_config:
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            out = subprocess.run(
                [pg_config, "--bindir"], capture_output=True, text=True, timeout=10, check=True
            ).stdout.strip()
            if out:
                candidates.append(Path(out))
    candidates.extend(sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=_version, reverse=True))
    initdb = shutil.which("initdb")
    if initdb:
        # Resolve symlinks (/usr/local/bin/initdb -> .../15/bin/initdb) to the real directory,
        # where pg_ctl also finds the matching postgres binary.
        candidates.append(Path(initdb).resolve().parent)
    for candidate in candidates:
        if _has_server_binaries(candidate):
            return candidate
    searched = ", ".join(str(c) for c in candidates) or "pg_config, /usr/lib/postgresql/*/bin, PATH"
    raise PostgresUnavailable(
        f"PostgreSQL server binaries ({', '.join(_REQUIRED_BINARIES)}) not found "
        f"(searched {searched}); {INSTALL_HINT}, or set {BINDIR_ENV}"
    )


# --- Starting -----------------------------------------------------------------------------------


def _init_and_start(
    bindir: Path, root: Path, os_user: str | None, extra: Mapping[str, str]
) -> PostgresServer:
    root.chmod(stat.S_IRWXU)
    _give(root, os_user)
    datadir = root / "data"
    socket_dir = root / "s"
    if len(str(socket_dir)) > _MAX_SOCKET_DIR_LEN:
        raise PostgresUnavailable(
            f"temporary directory {root} is too long for a unix socket path; set TMPDIR to a "
            "shorter directory"
        )

    initdb = _run(
        [
            *(str(bindir / "initdb"), "-D", str(datadir), "--no-sync", "-A", "trust"),
            *("-U", SUPERUSER, "--encoding=UTF8", "--locale=C"),
        ],
        user=os_user,
        cwd=root,
        check=False,
    )
    if initdb.returncode != 0:
        raise PostgresUnavailable(
            f"initdb failed (exit {initdb.returncode}, as {os_user or 'the current user'}):\n"
            f"{(initdb.stderr or initdb.stdout).strip()}"
        )
    # Written by us (maybe root) into files initdb created: appending and truncating keep the
    # files' owner, so the server can still read them.
    socket_dir.mkdir(mode=stat.S_IRWXU)
    _give(socket_dir, os_user)
    settings = dict(_SERVER_SETTINGS, unix_socket_directories=f"'{socket_dir}'", **extra)
    with (datadir / "postgresql.conf").open("a", encoding="utf-8") as conf:
        conf.write("\n# Added by tests/support/postgres.py\n")
        conf.writelines(f"{key} = {value}\n" for key, value in settings.items())
    (datadir / "pg_hba.conf").write_text(_PG_HBA, encoding="utf-8")

    server = PostgresServer(
        url="", port=0, bindir=bindir, datadir=datadir, root=root, os_user=os_user
    )
    server._start(attempts=_PORT_ATTEMPTS)
    return server


def _attach(raw_url: str) -> PostgresServer:
    try:
        url = make_url(raw_url)
    except Exception as exc:
        raise PostgresUnavailable(f"{EXTERNAL_URL_ENV} is not a database URL: {exc}") from exc
    if url.get_backend_name() != "postgresql":
        raise PostgresUnavailable(f"{EXTERNAL_URL_ENV} must be a postgresql:// URL")
    url = url.set(drivername=DRIVER)
    server = PostgresServer(
        url=url.render_as_string(hide_password=False),
        port=url.port or 5432,
        bindir=None,
        datadir=None,
    )
    try:
        _run_admin(server.url, "SELECT 1")
    except PostgresUnavailable as exc:
        raise PostgresUnavailable(f"{EXTERNAL_URL_ENV} is set but unusable: {exc}") from exc
    return server


# --- Running as root ----------------------------------------------------------------------------


def _service_user() -> str | None:
    """The OS user the server runs as: ``None`` (ourselves) unless we are root."""
    if os.geteuid() != 0:
        return None
    if shutil.which("runuser") is None:
        raise PostgresUnavailable(
            "running as root, and PostgreSQL refuses to run as root, but runuser (util-linux) "
            "is not installed to drop privileges"
        )
    for name in (SUPERUSER, FALLBACK_OS_USER):
        with contextlib.suppress(KeyError):
            pwd.getpwnam(name)
            return name
    useradd = shutil.which("useradd") or "/usr/sbin/useradd"
    result = subprocess.run(
        [useradd, "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", FALLBACK_OS_USER],
        capture_output=True,
        text=True,
        check=False,
    )
    try:
        pwd.getpwnam(FALLBACK_OS_USER)  # another pytest-xdist worker may have won the race
    except KeyError:
        raise PostgresUnavailable(
            f"running as root without a 'postgres' user, and creating {FALLBACK_OS_USER!r} "
            f"failed: {result.stderr.strip()}"
        ) from None
    return FALLBACK_OS_USER


def _temp_base(os_user: str | None) -> str:
    """A temp directory the service user can reach: every ancestor must be searchable."""
    base = tempfile.gettempdir()
    if os_user is None or _searchable_by_others(Path(base)):
        return base
    if _searchable_by_others(Path("/tmp")):  # the world-searchable fallback
        return "/tmp"
    raise PostgresUnavailable(
        f"no temporary directory the {os_user!r} user can reach ({base} is not); set TMPDIR"
    )


def _searchable_by_others(path: Path) -> bool:
    resolved = path.resolve()
    return all(p.stat().st_mode & stat.S_IXOTH for p in (resolved, *resolved.parents))


# --- Helpers ------------------------------------------------------------------------------------


def _run(
    argv: list[str], *, user: str | None, cwd: Path | None, check: bool = True
) -> subprocess.CompletedProcess[str]:
    if user is not None:
        argv = [shutil.which("runuser") or "runuser", "-u", user, "--", *argv]
    # libpq/initdb read PG* variables (PGDATA, PGPORT, PGOPTIONS...): a developer's shell
    # settings must not leak into the test server. LC_ALL=C keeps error messages in English.
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env["LC_ALL"] = "C"
    try:
        result = subprocess.run(
            argv,
            capture_output=True,
            text=True,
            cwd=cwd,
            env=env,
            timeout=_START_TIMEOUT_S + 30,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise PostgresUnavailable(f"{' '.join(argv)} failed: {exc}") from exc
    if check and result.returncode != 0:
        raise PostgresUnavailable(
            f"{' '.join(argv)} exited {result.returncode}: {result.stderr.strip()}"
        )
    return result


def _run_admin(url: str, *statements: str) -> object:
    """Run statements in autocommit mode on one connection; return the last one's scalar."""

    async def execute() -> object:
        engine = create_async_engine(url, poolclass=NullPool, isolation_level="AUTOCOMMIT")
        try:
            async with engine.connect() as connection:
                value: object = None
                for statement in statements:
                    result = await connection.execute(text(statement))
                    value = result.scalar() if result.returns_rows else None
                return value
        finally:
            await engine.dispose()

    # A thread with its own event loop: works whether or not the caller is inside one.
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="pg-admin") as pool:
        try:
            return pool.submit(asyncio.run, execute()).result()
        except Exception as exc:
            raise PostgresUnavailable(
                f"{'; '.join(statements)!r} on {_safe(url)} failed: {exc}"
            ) from exc


def _check_database_name(name: str) -> None:
    if not _DATABASE_NAME.fullmatch(name):
        raise ValueError(f"database name must match {_DATABASE_NAME.pattern}: {name!r}")


def _safe(url: str) -> str:
    return make_url(url).render_as_string(hide_password=True)


def _give(path: Path, os_user: str | None) -> None:
    """Hand a directory we created (as root) to the server's OS user."""
    if os_user is not None:
        user = pwd.getpwnam(os_user)
        os.chown(path, user.pw_uid, user.pw_gid)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _version(bindir: Path) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", bindir.parent.name)) or (0,)


def _has_server_binaries(path: Path) -> bool:
    return all(os.access(path / name, os.X_OK) for name in _REQUIRED_BINARIES)


def _read_from(path: Path, offset: int) -> str:
    try:
        with path.open("rb") as handle:
            handle.seek(offset)
            return handle.read().decode("utf-8", "replace")[-4000:]
    except OSError:
        return "(no server log)"


def _kill_postmaster(datadir: Path) -> None:
    # postmaster.pid's first line is the postmaster's pid; it exists only while our server in
    # this data directory runs, so the pid is one we started.
    try:
        pid = int((datadir / "postmaster.pid").read_text().split("\n", 1)[0])
    except (OSError, ValueError):
        return
    # A stale pid file could name a recycled pid: only kill a process that is a postgres.
    cmdline = Path(f"/proc/{pid}/cmdline")
    with contextlib.suppress(OSError):
        if b"postgres" not in cmdline.read_bytes():
            return
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(pid, signal.SIGKILL)


_LIVE: set[PostgresServer] = set()


@atexit.register
def _stop_all() -> None:
    for server in list(_LIVE):
        with contextlib.suppress(Exception):
            server.stop()


def _stop_on_sigterm() -> None:
    """Also clean up when the test run is terminated (``timeout``, a CI job cancelled).

    SIGTERM's default action ends the process without running atexit, which would leave a
    server and its directory behind. Only a default handler is replaced, and only from the main
    thread (the only one allowed to); the replacement stops our servers and then dies of the
    same signal, so the exit status is unchanged.
    """
    if threading.current_thread() is not threading.main_thread():
        return
    if signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
        return

    def on_sigterm(signum: int, _frame: object) -> None:
        _stop_all()
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)

    signal.signal(signal.SIGTERM, on_sigterm)
