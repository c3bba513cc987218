"""The container image without Docker (neither the development machine nor CI has a daemon):
the files ``docker/Dockerfile`` copies, laid out where it puts them, run the way
``docker/compose.yaml`` runs them, on a real PostgreSQL.

What this catches that the other end-to-end tests cannot, since they run from the checkout:
a runtime read of a file the image does not hold (anything outside ``gateway/``,
``providers/`` and ``config``'s TOML files and price tables), a configuration path that
only resolves from the repository's root, a compose command or variable the gateway does
not know, and a healthcheck that cannot tell a live process from a dead one. Not covered:
the base image's own packages, and the wheel's contents (the source tree stands in for the
installed package; ``tests/unit/test_packaging.py`` checks that every file the package
needs is in its package data).
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.e2e.conftest import REPO, ProcessGroup, free_port, wait_for
from tests.support.postgres import PostgresServer

pytestmark = pytest.mark.postgres

DOCKERFILE = REPO / "docker" / "Dockerfile"
COMPOSE = REPO / "docker" / "compose.yaml"
#: Fake credentials: an account exists, as in production, but nothing here calls Twilio
#: (the test's one message is scheduled a day ahead).
TWILIO = {
    "TWILIO_ACCOUNT_SID": "AC" + "0" * 32,
    "TWILIO_AUTH_TOKEN": "f" * 32,
    "TWILIO_FROM_NUMBER": "+14155550100",
}


class Image:
    """What the Dockerfile says, read from it (so the test follows the file)."""

    def __init__(self, text: str) -> None:
        self.copies: list[tuple[list[str], str]] = []  # (sources, absolute destination)
        self.env: dict[str, str] = {}
        self.workdir = "/"
        self.user = ""
        self.healthcheck: list[str] = []
        self.entrypoint: list[str] = []
        self.cmd: list[str] = []
        self.bases: list[str] = []
        for line in _instructions(text):
            word, _, rest = line.partition(" ")
            match word:
                case "FROM":
                    self.bases.append(rest.split()[0])
                case "WORKDIR":
                    self.workdir = rest.strip()
                case "COPY" if not rest.startswith("--from"):
                    *sources, destination = shlex.split(rest)
                    if not destination.startswith("/"):
                        destination = f"{self.workdir.rstrip('/')}/{destination}"
                    self.copies.append((sources, destination))
                case "ENV":
                    self.env.update(pair.split("=", 1) for pair in shlex.split(rest))
                case "USER":
                    self.user = rest.strip()
                case "HEALTHCHECK":
                    self.healthcheck = json.loads(rest[rest.index("CMD") + 3 :])
                case "ENTRYPOINT":
                    self.entrypoint = json.loads(rest)
                case "CMD":
                    self.cmd = json.loads(rest)

    def lay_out(self, root: Path) -> None:
        """Copy what each COPY copies, under ``root`` (``/src`` becomes ``root/src``)."""
        for sources, destination in self.copies:
            target = root / destination.lstrip("/")
            for pattern in sources:
                matches = sorted(REPO.glob(pattern))
                assert matches, f"the Dockerfile copies {pattern!r}, which does not exist"
                for source in matches:
                    into = target / source.name if destination.endswith("/") else target
                    if source.is_dir():
                        shutil.copytree(source, into, ignore=shutil.ignore_patterns("__pycache__"))
                    else:
                        into.parent.mkdir(parents=True, exist_ok=True)
                        shutil.copyfile(source, into)


def _instructions(text: str) -> list[str]:
    """The Dockerfile's instructions, continuation lines joined, comments dropped."""
    joined = re.sub(r"\\\n\s*", " ", text)
    return [
        line.strip()
        for line in joined.splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]


def _compose_env(
    environment: dict[str, str], given: dict[str, str], defaults: dict[str, str]
) -> dict[str, str]:
    """compose's ``${NAME:-default}``: ``given`` (the .env file) or the default."""

    def substitute(match: re.Match[str]) -> str:
        return given.get(match.group(1)) or match.group(2)

    return {
        name: re.sub(r"\$\{(\w+):-([^}]*)\}", substitute, str(value))
        for name, value in {**environment, **defaults}.items()
    }


@pytest.fixture
def image() -> Image:
    return Image(DOCKERFILE.read_text())


@pytest.fixture
def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return loaded


def test_the_image_is_slim_non_root_with_a_healthcheck(image: Image) -> None:
    assert image.bases
    assert all(base.endswith("-slim") for base in image.bases)
    assert image.user
    assert image.user not in ("0", "root")
    assert image.healthcheck[0] == "python"
    assert (image.entrypoint, image.cmd) == (["sms-gateway"], ["serve"])
    # The console script the entrypoint names is the CLI the test runs with `-m`.
    assert 'sms-gateway = "gateway.cli:main"' in (REPO / "pyproject.toml").read_text()


def test_the_compose_stack_runs_from_the_image_layout(
    image: Image,
    compose: dict[str, Any],
    postgres: PostgresServer,
    processes: ProcessGroup,
    tmp_path: Path,
) -> None:
    root = tmp_path / "image"
    image.lay_out(root)
    source, app = root / "src", root / image.workdir.lstrip("/")
    assert (app / "config" / "gateway.toml").is_file()
    assert not (app / "config" / ".env").exists()  # secrets never baked in

    services = compose["services"]
    database_url = postgres.create_database("image_layout")
    api_port, metrics_port = free_port(), free_port()
    base = _compose_env(
        compose["x-gateway"]["environment"],
        given={**TWILIO, "GATEWAY_PUBLIC_URL": f"http://127.0.0.1:{api_port}"},
        defaults={"GATEWAY_DATABASE_URL": database_url},
    )
    # Empty values reach the process as empty (compose passes them so): the gateway must
    # take each as unset, as the compose file says.
    assert base["TELNYX_API_KEY"] == ""
    assert base["GATEWAY_SECRETS_KEY"] == ""
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(app),
        # The image installs the package; here its sources are first on the path, and the
        # checkout is not (the working directory is the image's).
        "PYTHONPATH": str(source),
        **image.env,
        **base,
        "GATEWAY_PORT": str(api_port),
    }

    def run(*args: str, extra: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, *args],
            env={**env, **(extra or {})},
            cwd=app,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    where = run("-c", "import gateway, providers; print(gateway.__file__, providers.__file__)")
    assert where.returncode == 0, where.stderr
    assert all(Path(p).is_relative_to(source) for p in where.stdout.split()), where.stdout

    migrate = run("-m", "gateway.cli", *services["migrate"]["command"])
    assert migrate.returncode == 0, migrate.stderr
    # The README's (and compose's header's) way to make a key.
    created = run("-m", "gateway.cli", "keys", "create", "--app", "billing")
    assert created.returncode == 0, created.stderr
    [api_key] = re.findall(r"sgw_\S+", created.stdout)

    gateway = processes.start("gateway", *services["gateway"]["command"], env=env, cwd=app)
    worker_command = [
        str(metrics_port) if part == "9100" else part for part in services["worker"]["command"]
    ]
    health_url = services["worker"]["environment"]["GATEWAY_HEALTH_URL"].replace(
        "9100", str(metrics_port)
    )
    worker = processes.start(
        "worker", *worker_command, env={**env, "GATEWAY_HEALTH_URL": health_url}, cwd=app
    )
    base_url = f"http://127.0.0.1:{api_port}"

    def healthy(extra: dict[str, str]) -> bool:
        for launched in (gateway, worker):
            assert launched.process.poll() is None, launched.log_text()
        return run(*image.healthcheck[1:], extra=extra).returncode == 0

    # The image's HEALTHCHECK, as Docker runs it inside each container.
    wait_for(lambda: healthy({}), timeout=60, what="the API's healthcheck")
    wait_for(
        lambda: healthy({"GATEWAY_HEALTH_URL": health_url}),
        timeout=60,
        what="the worker's healthcheck",
    )
    dead = f"http://127.0.0.1:{free_port()}/health"
    assert run(*image.healthcheck[1:], extra={"GATEWAY_HEALTH_URL": dead}).returncode != 0

    tomorrow = (datetime.now(UTC) + timedelta(days=1)).isoformat()
    sent = httpx.post(
        f"{base_url}/v1/messages",
        json={"to": "+14155550123", "body": "from the image", "send_at": tomorrow},
        headers={"Authorization": f"Bearer {api_key}"},
        timeout=10,
    )
    assert sent.status_code == 202, sent.text
    assert sent.json()["status"] == "scheduled"
    # Priced from the image's copy of the list-price tables (none: no estimate).
    assert sent.json()["estimated_cost"] is not None, sent.text

    # docker stop: SIGTERM, and a graceful exit well within compose's stop_grace_period.
    # The worker exits 0; uvicorn re-raises the SIGTERM once its shutdown is complete, so
    # serve ends by the signal here (as a container's PID 1, which ignores a signal left to
    # its default action, it then exits 0: the README's Docker check saw that).
    for launched in (gateway, worker):
        launched.process.send_signal(signal.SIGTERM)
    assert worker.process.wait(timeout=30) == 0, worker.log_text()
    assert gateway.process.wait(timeout=30) == -signal.SIGTERM, gateway.log_text()
    assert '"Application shutdown complete."' in gateway.log_text()
