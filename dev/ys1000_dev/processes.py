"""Real Airflow processes for the demo and the end-to-end tests.

``AirflowStack`` starts the components ``airflow standalone`` starts — api-server, scheduler,
dag-processor, triggerer — as separate ``airflow`` processes for one ``AIRFLOW_HOME``:

- ``AirflowStack.standalone(home)``: LocalExecutor + SQLite (what ``airflow standalone`` runs);
- ``AirflowStack.celery(home, postgres, redis)``: CeleryExecutor, the metadata DB in PostgreSQL,
  Redis as the broker, plus one ``airflow celery worker`` — the production shape of
  ``docker-compose.yaml``, with ``PostgresServer`` / ``RedisServer`` started from the Debian
  packages on loopback in a temporary directory;
- ``AirflowStack.kubernetes(home, kubeconfig=..., namespace=...)``: KubernetesExecutor + SQLite,
  one worker pod per task in that cluster and namespace (``deploy/helm``'s shape); the pod
  template is written into ``home``: label ``ys1000.io/executable=true`` (the sandbox's node
  agent runs the pod as a local process), ``command: ["/usr/bin/env"]`` (the executor sets only
  ``args``), and in ``env`` everything a worker needs (it gets nothing else).

Every process gets its own process group (``start_new_session``) and a marker variable
(``YS1000_STACK_ID``) in its environment. ``stop()`` sends SIGTERM to each group, waits, then
SIGKILLs what is left — including processes that left their group (Airflow runs each task in its
own group) — found by the marker in ``/proc/<pid>/environ``. Nothing the stack started survives
it, and nothing else is touched.

The API server listens on a free loopback port; ``AIRFLOW__CORE__EXECUTION_API_SERVER_URL`` is set
to match (otherwise task instances hang in "Pre Execute"). ``ApiClient`` talks to REST API v2 with
a JWT from ``POST /auth/token`` (SimpleAuthManager, user ``admin``, password from the generated
passwords file): trigger a DAG, poll a run, list task instances, mark one failed.
"""

from __future__ import annotations

import atexit
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

from ys1000_dev.ports import ATTEMPTS, free_port, process_tree, retry_on_port_conflict, start_on_port, wait_listening
from ys1000.waiting import WaitTimeout, wait_until

STACK_MARKER = "YS1000_STACK_ID"
HOSTNAME_ENV = "YS1000_WORKER_HOSTNAME"
ADMIN = "admin"
TERMINAL_RUN_STATES = {"success", "failed"}
COMPONENTS = ("api-server", "scheduler", "dag-processor", "triggerer")


def repo_root() -> Path:
    return Path(__file__).resolve().parents[2]  # dev/ys1000_dev/processes.py → the repo


def venv_bin() -> Path:
    """The ``bin/`` of the Python running this (the project's venv): ``airflow`` lives there."""
    return Path(sys.executable).parent


def hostname_from_env() -> str:
    """``[core] hostname_callable`` for a worker that should be recognisable in the task
    instances it ran (``YS1000_WORKER_HOSTNAME``, else the FQDN)."""
    return os.environ.get(HOSTNAME_ENV) or socket.getfqdn()


def _clean_environ() -> dict[str, str]:
    """This process's environment without Airflow settings (tests set unit-test mode and their
    own AIRFLOW_HOME; the stack must not inherit them)."""
    # every AIRFLOW*: settings, connections, variables, and the AIRFLOW_CTX_* a dag.test() in
    # this process exported
    drop = ("AIRFLOW", "_AIRFLOW", "PYTEST_")
    return {k: v for k, v in os.environ.items() if not k.startswith(drop) and k != STACK_MARKER}


# -- managed processes ---------------------------------------------------------------------------


@dataclass
class Managed:
    """One started process (its own process group) and its log file."""

    name: str
    proc: subprocess.Popen
    log: Path

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None

    def tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


def _pids_with_marker(marker: str) -> list[int]:
    needle = f"{STACK_MARKER}={marker}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            env = (entry / "environ").read_bytes()
        except OSError:
            continue
        if needle in env.split(b"\0"):
            found.append(int(entry.name))
    return found


def _signal_group(proc: subprocess.Popen, sig: int) -> None:
    try:
        os.killpg(proc.pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


class ProcessSet:
    """Processes started with a common marker; ``stop`` ends all of them (and their children)."""

    def __init__(self, logs: Path, env: dict[str, str]):
        self.logs = logs
        self.logs.mkdir(parents=True, exist_ok=True)
        self.marker = uuid.uuid4().hex
        self.env = {**env, STACK_MARKER: self.marker}
        self.procs: dict[str, Managed] = {}

    def start(
        self,
        name: str,
        argv: list[str],
        *,
        env: dict[str, str] | None = None,
        user: str | None = None,
        cwd: str | Path | None = None,
    ) -> Managed:
        log = self.logs / f"{name}.log"
        with open(log, "ab") as out:
            proc = subprocess.Popen(
                argv,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env={**self.env, **(env or {})},
                start_new_session=True,
                cwd=cwd,
                **({"user": user, "group": _group_of(user), "extra_groups": []} if user else {}),
            )
        m = self.procs[name] = Managed(name, proc, log)
        return m

    def run(
        self,
        name: str,
        argv: list[str],
        *,
        env: dict[str, str] | None = None,
        user: str | None = None,
        timeout: float = 300,
    ) -> None:
        """Run a command to completion (own process group; killed with it on timeout)."""
        log = self.logs / f"{name}.log"
        with open(log, "ab") as out:
            proc = subprocess.Popen(
                argv,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env={**self.env, **(env or {})},
                start_new_session=True,
                **({"user": user, "group": _group_of(user), "extra_groups": []} if user else {}),
            )
            try:
                code = proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                _signal_group(proc, signal.SIGKILL)
                proc.wait()
                raise RuntimeError(f"`{' '.join(argv)}` did not finish in {timeout:.0f} s; log: {log}") from None
        if code != 0:
            tail = "\n".join(log.read_text(errors="replace").splitlines()[-25:])
            raise RuntimeError(f"`{' '.join(argv)}` failed with exit code {code}; log {log}:\n{tail}")

    def kill(self, names: Iterable[str]) -> None:
        """SIGKILL the process groups of ``names`` (if started) and forget them; the rest of the
        set keeps running."""
        for name in names:
            m = self.procs.pop(name, None)
            if m is None:
                continue
            _signal_group(m.proc, signal.SIGKILL)
            try:
                m.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:  # pragma: no cover - unkillable (D state)
                pass

    def dead(self) -> list[Managed]:
        return [m for m in self.procs.values() if not m.alive]

    def stop(self, timeout: float = 20.0, order: Iterable[str] | None = None) -> None:
        """SIGTERM every process group (in ``order`` first, then the rest), wait, SIGKILL the
        rest; then any straggler carrying this set's marker."""
        names = list(order or []) + [n for n in self.procs if n not in (order or [])]
        for name in names:
            m = self.procs.get(name)
            if m and m.alive:
                _signal_group(m.proc, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for name in names:
            m = self.procs.get(name)
            if m is None:
                continue
            try:
                m.proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
            _signal_group(m.proc, signal.SIGKILL)  # the group's other members too
            try:
                m.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:  # pragma: no cover - unkillable (D state)
                pass
        for sig, wait in ((signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)):
            left = _pids_with_marker(self.marker)
            if not left:
                break
            for pid in left:
                try:
                    os.kill(pid, sig)
                except (ProcessLookupError, PermissionError):
                    pass
            try:
                wait_until(lambda: not _pids_with_marker(self.marker), timeout=wait, what="stragglers to exit")
            except WaitTimeout:
                pass
        self.procs.clear()

    def remaining(self) -> list[int]:
        """Processes of this set still alive (for tests: empty after ``stop``)."""
        return _pids_with_marker(self.marker)


def _group_of(user: str) -> str:
    import grp
    import pwd

    return grp.getgrgid(pwd.getpwnam(user).pw_gid).gr_name


# -- PostgreSQL and Redis from the Debian packages -----------------------------------------------


def postgres_bindir() -> Path:
    """``/usr/lib/postgresql/<newest>/bin`` (Debian), else the directory of ``initdb`` on PATH."""
    roots = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: int(p.parts[-3]) if p.parts[-3].isdigit() else 0
    )
    if roots:
        return roots[-1].parent
    found = shutil.which("initdb")
    if found:
        return Path(found).parent
    raise RuntimeError(
        "PostgreSQL server binaries not found (install the Debian package `postgresql`: "
        "scripts/install-system-packages.sh, run by `make setup`)"
    )


def _postgres_user() -> str | None:
    """PostgreSQL refuses to run as root: as root, run it as the ``postgres`` system user
    (created by the Debian package; created here when missing)."""
    if os.geteuid() != 0:
        return None
    import pwd

    try:
        pwd.getpwnam("postgres")
    except KeyError:
        subprocess.run(
            ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", "postgres"], check=True
        )
    return "postgres"


class PostgresServer:
    """A throwaway PostgreSQL cluster on 127.0.0.1:<free port> (trust auth, database ``airflow``).

    Its data directory is a fresh ``mkdtemp`` (not under a root-only pytest dir: the server user
    must reach it); ``stop`` shuts it down and removes the directory."""

    def __init__(self, procs: ProcessSet, *, port: int | None = None, database: str = "airflow"):
        self.procs = procs
        self.port = port or free_port()
        self.database = database
        self.user = _postgres_user()
        self.dir = Path(tempfile.mkdtemp(prefix="ys1000-pg-"))
        self.data = self.dir / "data"

    @property
    def sqlalchemy_url(self) -> str:
        return f"postgresql+psycopg2://postgres@127.0.0.1:{self.port}/{self.database}"

    @property
    def celery_backend_url(self) -> str:
        return f"db+postgresql://postgres@127.0.0.1:{self.port}/{self.database}"

    def start(self, timeout: float = 60) -> "PostgresServer":
        bindir = postgres_bindir()
        if self.user:
            shutil.chown(self.dir, self.user, _group_of(self.user))
            os.chmod(self.dir, 0o700)
        self.procs.run(
            "postgres-initdb",
            [
                str(bindir / "initdb"),
                "-D",
                str(self.data),
                "-U",
                "postgres",
                "--auth=trust",
                "--encoding=UTF8",
                "--no-sync",
            ],
            user=self.user,
            timeout=120,
        )

        def launch(port: int) -> subprocess.Popen:
            return self.procs.start(
                "postgres",
                [
                    str(bindir / "postgres"),
                    "-D",
                    str(self.data),
                    "-p",
                    str(port),
                    "-c",
                    "listen_addresses=127.0.0.1",
                    "-c",
                    f"unix_socket_directories={self.dir}",
                    "-c",
                    "fsync=off",
                    "-c",
                    "synchronous_commit=off",
                    "-c",
                    "full_page_writes=off",
                    "-c",
                    "max_connections=200",
                ],
                user=self.user,
            ).proc

        # the chosen port may be taken before postgres binds it: then it starts on a fresh one
        # (before anything has been told the port: the stack reads it once this returns)
        _, self.port = start_on_port(
            launch,
            self.procs.logs / "postgres.log",
            "PostgreSQL",
            port=self.port,
            timeout=timeout,
            stop=lambda _: self.procs.kill(["postgres"]),
        )
        wait_until(self._ready, timeout=timeout, what=f"PostgreSQL on port {self.port}", interval=0.3)
        self._sql(f"CREATE DATABASE {self.database}")
        return self

    def _ready(self) -> bool:
        if not self.procs.procs["postgres"].alive:
            raise RuntimeError(f"PostgreSQL exited:\n{self.procs.procs['postgres'].tail()}")
        r = subprocess.run(
            [str(postgres_bindir() / "pg_isready"), "-h", "127.0.0.1", "-p", str(self.port)], capture_output=True
        )
        return r.returncode == 0

    def _sql(self, sql: str) -> None:
        subprocess.run(
            [
                str(postgres_bindir() / "psql"),
                "-h",
                "127.0.0.1",
                "-p",
                str(self.port),
                "-U",
                "postgres",
                "-d",
                "postgres",
                "-v",
                "ON_ERROR_STOP=1",
                "-q",
                "-c",
                sql,
            ],
            check=True,
            capture_output=True,
        )

    def cleanup(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)


class RedisServer:
    """A throwaway Redis on 127.0.0.1:<free port>, no persistence."""

    def __init__(self, procs: ProcessSet, *, port: int | None = None):
        self.procs = procs
        self.port = port or free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="ys1000-redis-"))

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 30) -> "RedisServer":
        binary = shutil.which("redis-server") or "/usr/bin/redis-server"
        if not Path(binary).exists():
            raise RuntimeError(
                "redis-server not found (install the Debian package `redis-server`: "
                "scripts/install-system-packages.sh, run by `make setup`)"
            )

        def launch(port: int) -> subprocess.Popen:
            return self.procs.start(
                "redis",
                [
                    binary,
                    "--port",
                    str(port),
                    "--bind",
                    "127.0.0.1",
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                    "--dir",
                    str(self.dir),
                    "--daemonize",
                    "no",
                ],
            ).proc

        _, self.port = start_on_port(
            launch,
            self.procs.logs / "redis.log",
            "Redis",
            port=self.port,
            timeout=timeout,
            stop=lambda _: self.procs.kill(["redis"]),
        )
        wait_until(self._ready, timeout=timeout, what=f"Redis on port {self.port}", interval=0.2)
        return self

    def _ready(self) -> bool:
        if not self.procs.procs["redis"].alive:
            raise RuntimeError(f"redis-server exited:\n{self.procs.procs['redis'].tail()}")
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
                s.sendall(b"PING\r\n")
                return s.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def cleanup(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)


# -- the Airflow stack ---------------------------------------------------------------------------


@dataclass
class AirflowStack:
    """Airflow's components for one ``AIRFLOW_HOME``; see the module docstring."""

    home: Path
    env: dict[str, str] = field(default_factory=dict)  # connections, variables, YS1000_CONFIG_DIR ...
    executor: str = "LocalExecutor"
    sql_alchemy_conn: str | None = None
    celery_broker: str | None = None
    celery_backend: str | None = None
    port: int | None = None
    dags_folder: Path | None = None
    parallelism: int = 8
    worker_hostname: str = "ys1000-celery-worker"
    # KubernetesExecutor (``kubernetes()``): where worker pods go; with ``worker_secret``
    # connections and Variables come from that Secret (``envFrom``), as in deploy/helm, instead
    # of the pod template
    kube_config: Path | None = None
    kube_namespace: str = "airflow"
    worker_secret: str | None = None
    # start-ups with fresh ports when one is taken before its server binds it (1: ``port`` or fail)
    port_attempts: int = ATTEMPTS

    def __post_init__(self) -> None:
        self.home = Path(self.home).resolve()
        self.home.mkdir(parents=True, exist_ok=True)
        self.port = self.port or free_port()
        # the log servers of the scheduler (LocalExecutor) or Celery worker, and of the triggerer
        self.worker_log_port, self.trigger_log_port = free_port(), free_port()
        self.dags_folder = Path(self.dags_folder or repo_root() / "dags")
        self.extra: list[Any] = []  # PostgresServer/RedisServer owned by this stack
        self.procs = ProcessSet(self.home / "process-logs", self._environment())
        self._client: ApiClient | None = None

    # construction ---------------------------------------------------------------------------
    @classmethod
    def standalone(cls, home: str | Path, env: dict[str, str] | None = None, **kw: Any) -> "AirflowStack":
        """LocalExecutor + SQLite in ``home`` (what ``airflow standalone`` runs)."""
        return cls(Path(home), dict(env or {}), **kw)

    @classmethod
    def celery(cls, home: str | Path, env: dict[str, str] | None = None, **kw: Any) -> "AirflowStack":
        """CeleryExecutor with a PostgreSQL metadata DB and a Redis broker (started here too)."""
        stack = cls(Path(home), dict(env or {}), executor="CeleryExecutor", **kw)
        stack.extra = [PostgresServer(stack.procs), RedisServer(stack.procs)]
        stack._wire_services()
        return stack

    @classmethod
    def kubernetes(
        cls,
        home: str | Path,
        env: dict[str, str] | None = None,
        *,
        kubeconfig: str | Path,
        namespace: str = "airflow",
        worker_secret: str | None = None,
        **kw: Any,
    ) -> "AirflowStack":
        """KubernetesExecutor + SQLite: every task runs in its own pod, created through the API
        server of ``kubeconfig`` in ``namespace`` (which must exist)."""
        return cls(
            Path(home),
            dict(env or {}),
            executor="KubernetesExecutor",
            kube_config=Path(kubeconfig),
            kube_namespace=namespace,
            worker_secret=worker_secret,
            **kw,
        )

    @property
    def pod_template_file(self) -> Path:
        return self.home / "pod_template.json"

    def _write_pod_template(self) -> None:
        """The KubernetesExecutor's pod template (JSON is YAML): the stack's settings in ``env``
        (not the API's signing secrets: a worker gets its task's token from the executor), the
        stack marker (``stop`` ends workers still running)."""
        secret_keys = ("AIRFLOW__API__SECRET_KEY", "AIRFLOW__API_AUTH__JWT_SECRET")
        from_secret = ("AIRFLOW_CONN_", "AIRFLOW_VAR_") if self.worker_secret else ()
        env = {
            k: v
            for k, v in self.procs.env.items()
            if k.startswith(("AIRFLOW", "YS1000_", "PATH"))
            and k not in secret_keys
            and not (from_secret and k.startswith(from_secret))
        }
        container: dict[str, Any] = {
            "name": "base",
            "image": "ys1000/airflow:0.1.0",
            "command": ["/usr/bin/env"],
            "env": [{"name": k, "value": v} for k, v in sorted(env.items())],
        }
        if self.worker_secret:
            container["envFrom"] = [{"secretRef": {"name": self.worker_secret}}]
        template = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "ys1000-worker", "labels": {"ys1000.io/executable": "true"}},
            "spec": {"restartPolicy": "Never", "containers": [container]},
        }
        self.pod_template_file.write_text(json.dumps(template, indent=2))
        self.pod_template_file.chmod(0o600)

    def _wire_services(self) -> None:
        """Point the settings at the PostgreSQL and Redis of ``extra`` (again once they are started:
        a port taken meanwhile moves them to another)."""
        for service in self.extra:
            if isinstance(service, PostgresServer):
                self.sql_alchemy_conn = service.sqlalchemy_url
                self.celery_backend = service.celery_backend_url
            elif isinstance(service, RedisServer):
                self.celery_broker = service.url
        self._refresh_env()

    def _refresh_env(self) -> None:
        self.procs.env = {**self._environment(), STACK_MARKER: self.procs.marker}

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def password_file(self) -> Path:
        return self.home / "simple_auth_manager_passwords.json.generated"

    def admin_password(self) -> str:
        return json.loads(self.password_file.read_text())[ADMIN]

    def _environment(self) -> dict[str, str]:
        secret_file = self.home / ".ys1000-secrets.json"
        if secret_file.exists():
            secrets_ = json.loads(secret_file.read_text())
        else:
            secrets_ = {"jwt": secrets.token_urlsafe(32), "api": secrets.token_urlsafe(32)}
            secret_file.write_text(json.dumps(secrets_))
            secret_file.chmod(0o600)
        path = os.pathsep.join([str(venv_bin()), str(repo_root() / "bin"), os.environ.get("PATH", "")])
        # hook material of the source tree, as the Docker image has it beside its config dir (the
        # demo and the tests point YS1000_CONFIG_DIR at copies of config/); the caller's wins
        env = (
            {"YS1000_HOOKS_DIR": str(repo_root() / "include" / "hooks")}
            | _clean_environ()
            | {
                "PATH": path,
                "AIRFLOW_HOME": str(self.home),
                "AIRFLOW__CORE__EXECUTOR": self.executor,
                "AIRFLOW__CORE__DAGS_FOLDER": str(self.dags_folder),
                "AIRFLOW__CORE__PLUGINS_FOLDER": str(repo_root() / "plugins"),
                "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
                "AIRFLOW__CORE__PARALLELISM": str(self.parallelism),
                "AIRFLOW__CORE__AUTH_MANAGER": "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager",
                "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{ADMIN}:admin",
                "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{self.url}/execution/",
                "AIRFLOW__API__BASE_URL": self.url,
                "AIRFLOW__API__HOST": "127.0.0.1",
                "AIRFLOW__API__PORT": str(self.port),
                "AIRFLOW__API__WORKERS": "1",
                "AIRFLOW__API__SECRET_KEY": secrets_["api"],
                "AIRFLOW__API_AUTH__JWT_SECRET": secrets_["jwt"],
                "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": self.sql_alchemy_conn or f"sqlite:///{self.home}/airflow.db",
                "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(self.worker_log_port),
                "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(self.trigger_log_port),
                "AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK": "False",
                "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "30",
                "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "True",
                "AIRFLOW__CORE__TEST_CONNECTION": "Enabled",  # the connections' "Test" button
            }
        )
        if self.executor == "CeleryExecutor":
            env |= {
                "AIRFLOW__CELERY__BROKER_URL": self.celery_broker or "",
                "AIRFLOW__CELERY__RESULT_BACKEND": self.celery_backend or "",
                "AIRFLOW__CELERY__WORKER_CONCURRENCY": "2",
            }
        if self.executor == "KubernetesExecutor":
            env |= {
                "AIRFLOW__KUBERNETES_EXECUTOR__CONFIG_FILE": str(self.kube_config),
                "AIRFLOW__KUBERNETES_EXECUTOR__IN_CLUSTER": "False",
                "AIRFLOW__KUBERNETES_EXECUTOR__NAMESPACE": self.kube_namespace,
                "AIRFLOW__KUBERNETES_EXECUTOR__POD_TEMPLATE_FILE": str(self.pod_template_file),
            }
        return env | self.env

    def write_env_file(self, path: str | Path | None = None) -> Path:
        """``export`` lines of the stack's Airflow settings, connections and Variables (mode 0600:
        it holds credentials), so ``. FILE && airflow dags list`` talks to this stack."""
        import shlex

        path = Path(path or self.home / "airflow.env")
        keep = ("AIRFLOW", "YS1000_", "PATH")
        lines = [
            f"export {k}={shlex.quote(v)}"
            for k, v in sorted(self.procs.env.items())
            if k.startswith(keep) and k != STACK_MARKER
        ]
        path.write_text("# the environment of the Airflow started by ys1000 (generated)\n" + "\n".join(lines) + "\n")
        path.chmod(0o600)
        return path

    # lifecycle ------------------------------------------------------------------------------
    def airflow(self) -> str:
        return str(venv_bin() / "airflow")

    def migrate(self, timeout: float = 300) -> None:
        """``airflow db migrate`` (creates or upgrades the metadata DB)."""
        self.procs.run("db-migrate", [self.airflow(), "db", "migrate"], timeout=timeout)

    def start(
        self, *, migrate: bool = True, on_migrated: Callable[["AirflowStack"], None] | None = None, timeout: float = 180
    ) -> "AirflowStack":
        """Start the backing services (Celery), migrate the DB, call ``on_migrated`` (e.g. create
        pools), start the components and wait until the API reports them healthy."""
        atexit.register(self.stop)  # a caller that dies without stop() leaves nothing behind
        try:
            for service in self.extra:
                service.start()
            if self.extra:
                self._wire_services()
            if migrate:
                self.migrate()
            if on_migrated:
                on_migrated(self)
            retry_on_port_conflict(
                lambda port: self._start_components(port, timeout),
                "Airflow",
                port=self.port,
                attempts=self.port_attempts,
            )
            self.wait_healthy(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def _start_components(self, port: int, timeout: float) -> None:
        """Start the components with the api-server on ``port`` and wait until the api-server and
        the log servers listen. Every component is told every port, so when one of them was taken
        before its server bound it (``PortInUse``), all components are stopped, and the caller
        starts them again on fresh ports."""
        if port != self.port:  # a retry: fresh ports for everything
            self.port = port
            self.worker_log_port, self.trigger_log_port = free_port(), free_port()
        self._refresh_env()
        if self.executor == "KubernetesExecutor":
            self._write_pod_template()
        names = [*COMPONENTS, *(["celery-worker"] if self.executor == "CeleryExecutor" else [])]
        offsets = {
            n: (self.procs.logs / f"{n}.log").stat().st_size if (self.procs.logs / f"{n}.log").exists() else 0
            for n in names
        }
        try:
            for name in COMPONENTS:
                argv = [self.airflow(), name]
                if name == "api-server":
                    argv += ["--host", "127.0.0.1", "--port", str(self.port), "--workers", "1"]
                self.procs.start(name, argv)
            if self.executor == "CeleryExecutor":
                self.procs.start(
                    "celery-worker",
                    [
                        self.airflow(),
                        "celery",
                        "worker",
                        "--concurrency",
                        "2",
                        "--celery-hostname",
                        f"{self.worker_hostname}@%h",
                        "--without-gossip",
                        "--without-mingle",
                    ],
                    env={
                        "AIRFLOW__CORE__HOSTNAME_CALLABLE": "ys1000_dev.processes.hostname_from_env",
                        HOSTNAME_ENV: self.worker_hostname,
                    },
                )
            # who serves which port: the scheduler serves task logs for the LocalExecutor, the
            # Celery worker for Celery; the triggerer serves trigger logs
            worker_logs = {"LocalExecutor": "scheduler", "CeleryExecutor": "celery-worker"}.get(self.executor)
            # the stack's processes (not by marker: setproctitle overwrites /proc/PID/environ)
            ours = lambda: set().union(*(process_tree(m.proc.pid) for m in self.procs.procs.values()))  # noqa: E731
            servers = [("api-server", self.port), ("triggerer", self.trigger_log_port)]
            if worker_logs:
                servers.append((worker_logs, self.worker_log_port))
            for name, p in servers:
                m = self.procs.procs[name]
                wait_listening(m.proc, p, m.log, f"Airflow {name}", timeout, log_offset=offsets[name], owners=ours)
        except BaseException:
            self.procs.kill(names)
            raise

    def wait_healthy(self, timeout: float = 180) -> dict:
        """Until ``/api/v2/monitor/health`` reports the metadata DB, scheduler, dag-processor and
        triggerer healthy (and, for Celery, the worker answers a ping)."""
        import httpx

        def check():
            if dead := self.procs.dead():
                raise RuntimeError(
                    "Airflow component(s) exited: "
                    + "; ".join(f"{m.name} (exit {m.proc.returncode}), log {m.log}:\n{m.tail()}" for m in dead)
                )
            try:
                r = httpx.get(f"{self.url}/api/v2/monitor/health", timeout=5)
            except httpx.HTTPError:
                return None
            if r.status_code != 200:
                return None
            health = r.json()
            parts = ("metadatabase", "scheduler", "triggerer", "dag_processor")
            if all((health.get(p) or {}).get("status") == "healthy" for p in parts):
                return health
            return None

        health = wait_until(check, timeout=timeout, what=f"Airflow at {self.url} to be healthy", interval=1.0)
        wait_until(lambda: self.password_file.exists(), timeout=30, what=str(self.password_file))
        if self.executor == "CeleryExecutor":
            wait_until(self._worker_ready, timeout=timeout, what="the Celery worker to be ready", interval=1.0)
        return health

    def _worker_ready(self) -> bool:
        if dead := self.procs.dead():
            raise RuntimeError(f"{dead[0].name} exited:\n{dead[0].tail()}")
        text = self.procs.procs["celery-worker"].tail(200)
        return f"{self.worker_hostname}@" in text and " ready." in text  # "NAME@host ready."

    def stop(self) -> None:
        """Stop every process this stack started (components first, then the DB and broker).
        Idempotent."""
        atexit.unregister(self.stop)
        self.procs.stop(
            order=["celery-worker", "scheduler", "triggerer", "dag-processor", "api-server", "redis", "postgres"]
        )
        for service in self.extra:
            service.cleanup()

    def __enter__(self) -> "AirflowStack":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    # the REST API ---------------------------------------------------------------------------
    def client(self) -> "ApiClient":
        if self._client is None:
            self._client = ApiClient(self.url, ADMIN, self.admin_password())
        return self._client

    def log_tail(self, name: str, lines: int = 40) -> str:
        m = self.procs.procs.get(name)
        return m.tail(lines) if m else ""


class ApiError(RuntimeError):
    pass


class ApiClient:
    """REST API v2 with a JWT (renewed on 401)."""

    def __init__(self, url: str, username: str, password: str):
        import httpx

        self.url = url.rstrip("/")
        self.username, self.password = username, password
        self.http = httpx.Client(base_url=self.url, timeout=60)
        self._token: str | None = None

    def token(self) -> str:
        if self._token is None:
            r = self.http.post("/auth/token", json={"username": self.username, "password": self.password})
            if r.status_code not in (200, 201):
                raise ApiError(f"POST /auth/token: HTTP {r.status_code}: {r.text[:300]}")
            self._token = r.json()["access_token"]
        return self._token

    def request(self, method: str, path: str, **kw: Any) -> Any:
        import httpx

        extra = kw.pop("headers", {})
        timeouts, renewed = 0, False
        while True:
            try:
                r = self.http.request(method, path, headers={**extra, "Authorization": f"Bearer {self.token()}"}, **kw)
            except httpx.TimeoutException:
                # the api-server (one worker) can take longer than the timeout on a loaded 2-core
                # machine; a GET has no effect, so asking again is safe (anything else is not)
                timeouts += 1
                if method != "GET" or timeouts > 2:
                    raise
                continue
            if r.status_code == 401 and not renewed:
                self._token, renewed = None, True
                continue
            if r.status_code >= 400:
                raise ApiError(f"{method} {path}: HTTP {r.status_code}: {r.text[:500]}")
            return r.json() if r.content else None

    def get(self, path: str, **kw: Any) -> Any:
        return self.request("GET", path, **kw)

    # DAGs and runs
    def wait_for_dag(self, dag_id: str, timeout: float = 120) -> dict:
        """Until the dag-processor has parsed and serialized ``dag_id``."""

        def check():
            try:
                return self.get(f"/api/v2/dags/{dag_id}")
            except ApiError as exc:
                if "HTTP 404" in str(exc):
                    return None
                raise

        dag = wait_until(check, timeout=timeout, what=f"DAG {dag_id} to be parsed", interval=1.0)
        return dag

    def import_errors(self) -> list[dict]:
        return self.get("/api/v2/importErrors").get("import_errors", [])

    def unpause(self, dag_id: str) -> None:
        self.request("PATCH", f"/api/v2/dags/{dag_id}", json={"is_paused": False})

    def trigger(
        self,
        dag_id: str,
        conf: dict | None = None,
        *,
        unpause: bool = True,
        run_id: str | None = None,
        note: str | None = None,
    ) -> dict:
        """``POST /api/v2/dags/{dag_id}/dagRuns`` (the DAG is unpaused first: a paused DAG's runs
        wait). Returns the run (``dag_run_id``, ``state`` ...)."""
        if unpause:
            self.unpause(dag_id)
        body: dict[str, Any] = {"logical_date": None, "conf": conf or {}}
        if run_id:
            body["dag_run_id"] = run_id
        if note:
            body["note"] = note
        return self.request("POST", f"/api/v2/dags/{dag_id}/dagRuns", json=body)

    def run(self, dag_id: str, run_id: str) -> dict:
        return self.get(f"/api/v2/dags/{dag_id}/dagRuns/{run_id}")

    def wait_run(self, dag_id: str, run_id: str, timeout: float = 300, states: set[str] = TERMINAL_RUN_STATES) -> dict:
        """Poll the run until its state is one of ``states``; returns the run."""
        return wait_until(
            lambda: (r := self.run(dag_id, run_id))["state"] in states and r,
            timeout=timeout,
            what=f"run {run_id} of {dag_id} to reach {sorted(states)}",
            interval=1.0,
        )

    def task_instances(self, dag_id: str, run_id: str) -> dict[str, dict]:
        data = self.get(f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances")
        return {ti["task_id"]: ti for ti in data["task_instances"]}

    def task_instance(self, dag_id: str, run_id: str, task_id: str) -> dict:
        return self.get(f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}")

    def wait_task(self, dag_id: str, run_id: str, task_id: str, states: set[str], timeout: float = 120) -> dict:
        return wait_until(
            lambda: (t := self.task_instance(dag_id, run_id, task_id))["state"] in states and t,
            timeout=timeout,
            what=f"task {task_id} of {dag_id}/{run_id} to reach {sorted(states)}",
            interval=0.5,
        )

    def mark_task(self, dag_id: str, run_id: str, task_id: str, state: str = "failed", note: str | None = None) -> Any:
        """What "Mark as failed" in the UI does: ``PATCH .../taskInstances/{task_id}``."""
        body: dict[str, Any] = {"new_state": state}
        if note:
            body["note"] = note
        return self.request("PATCH", f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}", json=body)

    def pool(self, name: str) -> dict:
        return self.get(f"/api/v2/pools/{name}")

    def task_log(self, dag_id: str, run_id: str, task_id: str, try_number: int = 1) -> str:
        data = self.request(
            "GET",
            f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/logs/{try_number}",
            params={"full_content": "true"},
            headers={"Accept": "application/json"},
        )
        content = data.get("content") if isinstance(data, dict) else data
        if isinstance(content, list):
            return "\n".join(c.get("event", "") if isinstance(c, dict) else str(c) for c in content)
        return str(content)
