"""The Kubernetes manifests (deploy/k8s) and the alert rules (deploy/prometheus/alerts.yml).

Two layers:

- schema: every built-in object is validated with ``kubernetes-validate`` (strict: unknown
  fields are errors) against the bundled schemas of Kubernetes ``K8S_VERSION``. The KEDA
  ScaledObject is a CRD with no bundled schema: it is checked structurally below instead.
  Without ``kubernetes-validate`` installed, those tests are skipped; the rest still run.
- invariants (PyYAML): probes, resources, the worker's grace period against the longest attempt,
  pinned images, secrets only through secretKeyRef, placeholder-only Secret, the restricted
  security context, labels and cross-references, the kustomization's file list, the alerts.
"""

from __future__ import annotations

import math
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from callq.settings import Settings
from callq.store import gauges
from callq.store.demand import account_rate, worst_hold_seconds

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
ALERTS = ROOT / "deploy" / "prometheus" / "alerts.yml"

K8S_VERSION = "1.30.0"
IMAGE = "ghcr.io/example/callq"
NAMESPACE = "callq"

EXPECTED_FILES = {
    "namespace.yaml",
    "configmap.yaml",
    "secret.example.yaml",
    "worker-deployment.yaml",
    "callbacks-deployment.yaml",
    "callbacks-service.yaml",
    "callbacks-ingress.yaml",
    "api-deployment.yaml",
    "api-service.yaml",
    "api-ingress.yaml",
    "flower-deployment.yaml",
    "flower-service.yaml",
    "worker-keda-scaledobject.yaml",
    "worker-hpa.yaml",
    "worker-pdb.yaml",
    "campaign-cronjob.yaml",
}
# Kept out of kustomization.yaml on purpose (explained there and in deploy/README.md).
NOT_IN_KUSTOMIZATION = {"secret.example.yaml", "worker-hpa.yaml"}
CRD_KINDS = {"ScaledObject"}

SECRET_NAMES = {
    "EXOTEL_API_KEY",
    "EXOTEL_API_TOKEN",
    "CALLBACK_TOKEN",
    "FLOWER_BASIC_AUTH",
    "API_TOKEN",
    "EVENTS_SECRET",
}
SECRETISH = re.compile(r"(TOKEN|PASSWORD|SECRET|API_KEY|BASIC_AUTH)", re.IGNORECASE)
RUN_AS = 10001

METRICS = {
    "callq_calls_total",
    "callq_exotel_latency_seconds",
    "callq_limiter_wait_seconds",
    "callq_rate_limited_total",
    "callq_in_doubt_calls",
    "callq_callbacks_total",
    "callq_breaker_open",
}


# --- loading -------------------------------------------------------------------------------------


def _load(path: Path) -> list[dict[str, Any]]:
    with path.open(encoding="utf-8") as fh:
        return [d for d in yaml.safe_load_all(fh) if d]


MANIFEST_FILES = sorted(p for p in K8S.glob("*.yaml") if p.name != "kustomization.yaml")
DOCS: list[tuple[str, dict[str, Any]]] = [(p.name, d) for p in MANIFEST_FILES for d in _load(p)]


def _id(item: tuple[str, dict[str, Any]]) -> str:
    name, doc = item
    return f"{name}:{doc.get('kind')}/{doc.get('metadata', {}).get('name')}"


def _of_kind(kind: str) -> list[dict[str, Any]]:
    return [d for _, d in DOCS if d.get("kind") == kind]


def _one(kind: str, name: str) -> dict[str, Any]:
    found = [d for d in _of_kind(kind) if d["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind}/{name}, found {len(found)}"
    return found[0]


def _pod_template(doc: dict[str, Any]) -> dict[str, Any] | None:
    kind = doc.get("kind")
    if kind in ("Deployment", "StatefulSet", "DaemonSet", "Job"):
        return doc["spec"]["template"]
    if kind == "CronJob":
        return doc["spec"]["jobTemplate"]["spec"]["template"]
    return None


WORKLOADS = [(f, d) for f, d in DOCS if _pod_template(d) is not None]


def _containers(pod_spec: dict[str, Any]) -> list[dict[str, Any]]:
    return list(pod_spec.get("initContainers", [])) + list(pod_spec["containers"])


ALL_CONTAINERS = [
    (f"{_id((f, d))}:{c['name']}", d, _pod_template(d)["spec"], c)  # type: ignore[index]
    for f, d in WORKLOADS
    for c in _containers(_pod_template(d)["spec"])  # type: ignore[index]
]


def _config() -> dict[str, str]:
    return _one("ConfigMap", "callq-config")["data"]


def _container(deployment: str, container: str) -> dict[str, Any]:
    spec = _one("Deployment", deployment)["spec"]["template"]["spec"]
    return next(c for c in spec["containers"] if c["name"] == container)


def _env_names(container: dict[str, Any]) -> set[str]:
    """Names a container gets from env and from envFrom ConfigMaps/Secrets we ship."""
    names = {e["name"] for e in container.get("env", [])}
    for src in container.get("envFrom", []):
        prefix = src.get("prefix", "")
        if "configMapRef" in src:
            cm = _one("ConfigMap", src["configMapRef"]["name"])
            names |= {prefix + k for k in cm.get("data", {})}
        if "secretRef" in src:
            secret = _one("Secret", src["secretRef"]["name"])
            names |= {prefix + k for k in secret.get("stringData", {})}
    return names


# --- files and the kustomization ------------------------------------------------------------------


def test_every_expected_manifest_exists_and_parses() -> None:
    assert {p.name for p in MANIFEST_FILES} >= EXPECTED_FILES
    assert ALERTS.is_file()
    for name, doc in DOCS:
        assert doc.get("apiVersion") and doc.get("kind"), name
        assert doc.get("metadata", {}).get("name"), name


def test_kustomization_lists_every_file_it_should() -> None:
    text = (K8S / "kustomization.yaml").read_text(encoding="utf-8")
    kz = yaml.safe_load(text)
    assert kz["kind"] == "Kustomization"
    assert kz["namespace"] == NAMESPACE
    resources = kz["resources"]
    assert len(resources) == len(set(resources)), "a resource is listed twice"
    assert all((K8S / r).is_file() for r in resources)
    assert set(resources) == {p.name for p in MANIFEST_FILES} - NOT_IN_KUSTOMIZATION
    # The files left out are left out on purpose, and the file says why.
    for name in NOT_IN_KUSTOMIZATION:
        assert name in text
    for image in kz.get("images", []):
        assert image["newTag"] and image["newTag"] != "latest"


def test_every_object_is_in_the_namespace_and_labelled() -> None:
    for item in DOCS:
        _, doc = item
        meta = doc["metadata"]
        if doc["kind"] == "Namespace":
            assert meta["name"] == NAMESPACE
        else:
            assert meta.get("namespace") == NAMESPACE, _id(item)
        labels = meta.get("labels", {})
        for key in ("app.kubernetes.io/name", "app.kubernetes.io/instance"):
            assert key in labels, f"{_id(item)} lacks label {key}"
        assert labels.get("app.kubernetes.io/part-of") == "callq", _id(item)


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl (with kustomize) not found")
def test_kustomize_builds() -> None:
    out = subprocess.run(
        ["kubectl", "kustomize", str(K8S)], capture_output=True, text=True, timeout=60, check=False
    )
    assert out.returncode == 0, out.stderr
    built = [d for d in yaml.safe_load_all(out.stdout) if d]
    kinds = sorted(d["kind"] for d in built)
    assert "Secret" not in kinds
    assert "HorizontalPodAutoscaler" not in kinds
    assert kinds.count("Deployment") == 4
    assert {"ScaledObject", "CronJob", "PodDisruptionBudget", "Ingress"} <= set(kinds)
    assert all(
        d["metadata"].get("namespace") == NAMESPACE for d in built if d["kind"] != "Namespace"
    )


# --- schema validation ------------------------------------------------------------------------


@pytest.mark.parametrize("item", DOCS, ids=_id)
def test_manifest_matches_the_kubernetes_schema(item: tuple[str, dict[str, Any]]) -> None:
    kv = pytest.importorskip(
        "kubernetes_validate.utils",
        reason="kubernetes-validate is not installed (pip install kubernetes-validate)",
    )
    _, doc = item
    if doc["kind"] in CRD_KINDS:
        pytest.skip(
            f"{doc['kind']} is a CRD (KEDA): kubernetes-validate bundles no schema for it; "
            "test_keda_scaledobject checks it structurally"
        )
    try:
        kv.validate(doc, K8S_VERSION, strict=True)
    except kv.ValidationError as exc:
        path = ".".join(str(p) for p in exc.path)
        pytest.fail(f"{_id(item)} against Kubernetes {K8S_VERSION}: {path}: {exc.message}")


# --- workloads: probes, resources, images, security -------------------------------------------------


def test_there_are_the_expected_workloads() -> None:
    names = {(d["kind"], d["metadata"]["name"]) for _, d in WORKLOADS}
    assert names == {
        ("Deployment", "callq-worker"),
        ("Deployment", "callq-callbacks"),
        ("Deployment", "callq-flower"),
        ("Deployment", "callq-api"),
        ("CronJob", "callq-campaign-reminders"),
    }


@pytest.mark.parametrize(
    ("cid", "doc", "pod", "container"), ALL_CONTAINERS, ids=[c[0] for c in ALL_CONTAINERS]
)
def test_every_container_is_probed_resourced_pinned_and_locked_down(
    cid: str, doc: dict[str, Any], pod: dict[str, Any], container: dict[str, Any]
) -> None:
    # Probes: every long-running container; a CronJob's run-to-completion container has none.
    if doc["kind"] != "CronJob":
        for probe in ("livenessProbe", "readinessProbe"):
            assert probe in container, f"{cid}: no {probe}"
            named = [
                h.get("port")
                for h in (container[probe].get("httpGet"), container[probe].get("tcpSocket"))
                if h
            ]
            ports = {p["name"] for p in container.get("ports", [])}
            assert all(isinstance(p, int) or p in ports for p in named), f"{cid}: {probe} port"

    # Resources: requests and limits for CPU and memory, requests within limits.
    res = container.get("resources", {})
    for kind in ("requests", "limits"):
        assert {"cpu", "memory"} <= set(res.get(kind, {})), f"{cid}: resources.{kind}"
    assert _cpu(res["requests"]["cpu"]) <= _cpu(res["limits"]["cpu"]), cid
    assert _mem(res["requests"]["memory"]) <= _mem(res["limits"]["memory"]), cid

    # Image: ours, pinned.
    image = container["image"]
    assert _tag(image) not in (None, "latest"), f"{cid}: image {image!r} is not pinned"
    assert image.startswith(IMAGE + ":") or "@sha256:" in image, cid

    # Security: the effective context (container over pod).
    psc, csc = pod.get("securityContext", {}), container.get("securityContext", {})
    assert csc.get("runAsNonRoot", psc.get("runAsNonRoot")) is True, cid
    assert csc.get("runAsUser", psc.get("runAsUser")) == RUN_AS, cid
    assert csc.get("readOnlyRootFilesystem") is True, cid
    assert csc.get("allowPrivilegeEscalation") is False, cid
    assert csc.get("privileged", False) is False, cid
    assert "ALL" in csc.get("capabilities", {}).get("drop", []), cid
    assert not csc.get("capabilities", {}).get("add"), cid
    seccomp = csc.get("seccompProfile", psc.get("seccompProfile", {}))
    assert seccomp.get("type") == "RuntimeDefault", cid
    assert pod.get("automountServiceAccountToken") is False, cid

    # A read-only root needs a writable /tmp: an emptyDir.
    volumes = {v["name"]: v for v in pod.get("volumes", [])}
    tmp = [m for m in container.get("volumeMounts", []) if m["mountPath"] == "/tmp"]
    assert tmp and "emptyDir" in volumes[tmp[0]["name"]], f"{cid}: /tmp is not an emptyDir"


def _tag(image: str) -> str | None:
    if "@sha256:" in image:
        return image.split("@", 1)[1]
    last = image.rsplit("/", 1)[-1]
    return last.split(":", 1)[1] if ":" in last else None


def _cpu(q: str | int | float) -> float:
    s = str(q)
    return float(s[:-1]) / 1000 if s.endswith("m") else float(s)


_MEM_UNITS = {
    "Ki": 2**10,
    "Mi": 2**20,
    "Gi": 2**30,
    "Ti": 2**40,
    "K": 10**3,
    "M": 10**6,
    "G": 10**9,
}


def _mem(q: str | int) -> float:
    s = str(q)
    for unit, factor in _MEM_UNITS.items():
        if s.endswith(unit):
            return float(s[: -len(unit)]) * factor
    return float(s)


def test_quantity_parsers() -> None:
    assert _cpu("100m") == 0.1 and _cpu("1") == 1.0 and _cpu(2) == 2.0
    assert _mem("256Mi") == 256 * 2**20 and _mem("1G") == 10**9 and _mem("1024") == 1024
    assert _tag("ghcr.io/example/callq:0.1.0") == "0.1.0"
    assert _tag("ghcr.io/example/callq") is None and _tag("localhost:5000/callq") is None


def test_the_pod_security_standard_is_enforced() -> None:
    labels = _one("Namespace", NAMESPACE)["metadata"]["labels"]
    assert labels["pod-security.kubernetes.io/enforce"] == "restricted"


# --- configuration and secrets ---------------------------------------------------------------------


def test_the_configmap_is_accepted_by_settings_and_holds_no_secret() -> None:
    data = _config()
    assert all(isinstance(v, str) for v in data.values()), "ConfigMap values must be strings"
    assert not SECRET_NAMES & set(data)
    assert not [k for k in data if SECRETISH.search(k)]
    fields = {k.lower(): v for k, v in data.items() if k.lower() in Settings.model_fields}
    assert set(data) == {k.upper() for k in fields}, "unknown settings"
    settings = Settings(_env_file=None, **fields)  # type: ignore[call-arg]
    assert settings.redis_url and settings.callback_url
    # No credentials in the Redis URL while it lives in a ConfigMap.
    assert urlsplit(settings.redis_url).password is None


def test_secrets_come_only_from_secret_refs() -> None:
    secret_keys = set(_one("Secret", "callq-secrets")["stringData"])
    for cid, _, _, container in ALL_CONTAINERS:
        for env in container.get("env", []):
            name = env["name"]
            if name in SECRET_NAMES or SECRETISH.search(name):
                assert "value" not in env, f"{cid}: {name} is a literal"
                ref = env.get("valueFrom", {}).get("secretKeyRef")
                assert ref, f"{cid}: {name} does not come from a Secret"
                assert ref["name"] == "callq-secrets" and ref["key"] in secret_keys, cid
        for src in container.get("envFrom", []):
            if "configMapRef" in src:
                cm = _one("ConfigMap", src["configMapRef"]["name"])
                assert not SECRET_NAMES & set(cm.get("data", {})), cid


def test_each_component_gets_only_the_secrets_it_needs() -> None:
    def secrets_of(container: dict[str, Any]) -> set[str]:
        return {
            e["valueFrom"]["secretKeyRef"]["key"]
            for e in container.get("env", [])
            if "secretKeyRef" in e.get("valueFrom", {})
        }

    assert secrets_of(_container("callq-worker", "worker")) == {
        "EXOTEL_API_KEY",
        "EXOTEL_API_TOKEN",
        "CALLBACK_TOKEN",
        "EVENTS_SECRET",
    }
    assert secrets_of(_container("callq-callbacks", "callbacks")) == {"CALLBACK_TOKEN"}
    assert secrets_of(_container("callq-flower", "flower")) == {"FLOWER_BASIC_AUTH"}
    assert secrets_of(_container("callq-api", "api")) == {"API_TOKEN"}
    cron = _one("CronJob", "callq-campaign-reminders")
    (enqueue,) = _pod_template(cron)["spec"]["containers"]  # type: ignore[index]
    assert secrets_of(enqueue) == set()


def test_the_secret_is_an_example_of_placeholders_only() -> None:
    (secret,) = _of_kind("Secret")
    assert "data" not in secret, "base64 `data` could hide a real value: use stringData"
    values = secret["stringData"]
    assert set(values) == SECRET_NAMES
    for key, value in values.items():
        assert re.fullmatch(r"([a-z]+:)?REPLACE_ME", value), f"{key} is not a placeholder"


def test_dollar_references_are_env_vars_or_run_under_a_shell() -> None:
    """Kubernetes expands only $(VAR) of defined env vars; anything else needs `sh -c`."""
    for cid, _, _, container in ALL_CONTAINERS:
        argv = list(container.get("command", [])) + list(container.get("args", []))
        shell = argv[:2] in (["sh", "-c"], ["/bin/sh", "-c"], ["bash", "-c"])
        defined = _env_names(container)
        for arg in argv:
            for ref in re.findall(r"\$\(([^)]*)\)", arg):
                if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", ref):
                    assert ref in defined, f"{cid}: $({ref}) is not defined in the container"
                else:
                    assert shell, f"{cid}: $({ref}) is shell syntax outside `sh -c`"


# --- the worker ---------------------------------------------------------------------------------


def test_worker_grace_period_exceeds_the_longest_attempt() -> None:
    pod = _one("Deployment", "callq-worker")["spec"]["template"]["spec"]
    grace = pod["terminationGracePeriodSeconds"]
    assert grace >= 60 + 3.05 + 30 + 15
    # And against the ConfigMap's own values, whatever they become.
    fields = {k.lower(): v for k, v in _config().items() if k.lower() in Settings.model_fields}
    s = Settings(_env_file=None, **fields)  # type: ignore[call-arg]
    assert grace > s.longest_attempt_seconds + s.lease_grace_seconds


def test_worker_command_heartbeat_and_metrics() -> None:
    worker = _container("callq-worker", "worker")
    argv = worker["command"] + worker.get("args", [])
    assert argv[:4] == ["celery", "-A", "worker", "worker"]
    assert argv[argv.index("-Q") + 1] == "calls"
    assert argv[argv.index("--pool") + 1] == "threads"
    assert argv[argv.index("--concurrency") + 1] == _config()["WORKER_CONCURRENCY"]

    env = {e["name"]: e.get("value") for e in worker["env"]}
    heartbeat = env["WORKER_HEARTBEAT_FILE"]
    assert heartbeat == "/tmp/callq/heartbeat"
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        command = worker[probe]["exec"]["command"]
        assert command[:2] == ["python", "-c"], probe
        assert f"'{heartbeat}'" in command[2] and "< 30" in command[2], probe
        compile(command[2], probe, "exec")
    ports = {p["name"]: p["containerPort"] for p in worker["ports"]}
    assert str(ports["metrics"]) == env["METRICS_PORT"] == "9100"
    # KEDA owns the replica count.
    assert "replicas" not in _one("Deployment", "callq-worker")["spec"]


def test_keda_scaledobject() -> None:
    (so,) = _of_kind("ScaledObject")
    assert so["apiVersion"] == "keda.sh/v1alpha1"
    spec = so["spec"]
    assert set(spec) <= {
        "scaleTargetRef",
        "minReplicaCount",
        "maxReplicaCount",
        "pollingInterval",
        "cooldownPeriod",
        "idleReplicaCount",
        "initialCooldownPeriod",
        "advanced",
        "fallback",
        "triggers",
    }
    target = spec["scaleTargetRef"]
    assert target["name"] == "callq-worker"
    assert target.get("kind", "Deployment") == "Deployment"
    _one("Deployment", target["name"])
    assert target.get("envSourceContainerName", "worker") == "worker"
    assert (spec["minReplicaCount"], spec["maxReplicaCount"]) == (2, 20)

    # The trigger is the real demand (callq.store.demand), not `LLEN calls`: calls wait
    # parked in their campaigns, so that list stays short however big the backlog.
    (trigger,) = spec["triggers"]
    assert trigger["type"] == "prometheus"
    meta = trigger["metadata"]
    assert all(isinstance(v, str) for v in meta.values()), "KEDA metadata values are strings"
    assert urlsplit(meta["serverAddress"]).scheme in ("http", "https")
    # max(): every worker reports the same value, read from Redis at scrape time.
    assert re.fullmatch(r"max\(callq_worker_threads_needed(\{[^}]*\})?\)", meta["query"])
    assert '"callq_worker_threads_needed"' in Path(gauges.__file__).read_text()
    # The query's job matches the scrape config's job name in deploy/README.md.
    assert 'job=~".*callq-worker.*"' in meta["query"]
    # threshold = threads per worker: replicas = ceil(threads needed / WORKER_CONCURRENCY).
    config = _config()
    assert meta["threshold"] == config["WORKER_CONCURRENCY"]
    # An empty answer is an error (then the fallback), not 0 (which would scale down).
    assert meta.get("ignoreNullValues") == "false"
    # The fallback is the worst case at the ConfigMap's limit: every request taking the
    # whole connect and read timeouts after the feed's lead.
    fields = {k.lower(): v for k, v in config.items() if k.lower() in Settings.model_fields}
    s = Settings(_env_file=None, **fields)  # type: ignore[call-arg]
    worst = math.ceil(account_rate(s) * worst_hold_seconds(s) / s.worker_concurrency)
    fallback = spec["fallback"]
    assert int(fallback["failureThreshold"]) >= 1
    assert fallback["replicas"] == worst == 7
    assert spec["minReplicaCount"] <= fallback["replicas"] <= spec["maxReplicaCount"]


def test_fallback_hpa_and_pdb() -> None:
    (hpa,) = _of_kind("HorizontalPodAutoscaler")
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": "callq-worker",
    }
    assert hpa["spec"]["minReplicas"] >= 1
    assert [m["resource"]["name"] for m in hpa["spec"]["metrics"]] == ["cpu"]

    (pdb,) = _of_kind("PodDisruptionBudget")
    spec = pdb["spec"]
    assert spec.get("minAvailable") == 1 or spec.get("maxUnavailable") == 1
    worker_labels = _one("Deployment", "callq-worker")["spec"]["template"]["metadata"]["labels"]
    assert spec["selector"]["matchLabels"].items() <= worker_labels.items()


# --- selectors and references -------------------------------------------------------------------


def test_selectors_match_their_pods() -> None:
    for dep in _of_kind("Deployment"):
        selector = dep["spec"]["selector"]["matchLabels"]
        assert selector.items() <= dep["spec"]["template"]["metadata"]["labels"].items()
    for svc in _of_kind("Service"):
        matches = [
            d
            for d in _of_kind("Deployment")
            if svc["spec"]["selector"].items()
            <= d["spec"]["template"]["metadata"]["labels"].items()
        ]
        assert len(matches) == 1, svc["metadata"]["name"]
        ports = {
            p["name"] for c in _pod_template(matches[0])["spec"]["containers"] for p in c["ports"]
        }  # type: ignore[index]
        for port in svc["spec"]["ports"]:
            assert port["targetPort"] in ports


def test_callbacks_ingress_matches_callback_url() -> None:
    ing = _one("Ingress", "callq-callbacks")
    (rule,) = ing["spec"]["rules"]
    assert rule["host"] == "calls.example.com"
    assert any(rule["host"] in t["hosts"] and t["secretName"] for t in ing["spec"]["tls"])
    (path,) = rule["http"]["paths"]
    backend = path["backend"]["service"]
    svc = _one("Service", backend["name"])
    assert backend["port"]["name"] in {p["name"] for p in svc["spec"]["ports"]}
    url = urlsplit(_config()["CALLBACK_URL"])
    assert url.scheme == "https" and url.hostname == rule["host"]
    assert url.path == path["path"] == "/exotel/status-callback"
    # Only the callback path is public: not /metrics, /healthz, or /.
    assert path["pathType"] == "Exact"

    callbacks = _container("callq-callbacks", "callbacks")
    assert callbacks["command"] == [
        "python",
        "-m",
        "callbacks",
        "--host",
        "0.0.0.0",
        "--port",
        "8000",
    ]
    assert callbacks["livenessProbe"]["httpGet"]["path"] == "/livez"
    assert callbacks["readinessProbe"]["httpGet"]["path"] == "/healthz"


def test_the_api_has_its_own_ingress_kept_apart_from_the_callbacks() -> None:
    assert {i["metadata"]["name"] for i in _of_kind("Ingress")} == {"callq-callbacks", "callq-api"}
    api = _one("Ingress", "callq-api")
    callbacks = _one("Ingress", "callq-callbacks")
    (rule,) = api["spec"]["rules"]
    (cb_rule,) = callbacks["spec"]["rules"]
    # Its own host and TLS Secret.
    assert rule["host"] != cb_rule["host"]
    assert any(rule["host"] in t["hosts"] and t["secretName"] for t in api["spec"]["tls"])
    assert {t["secretName"] for t in api["spec"]["tls"]}.isdisjoint(
        t["secretName"] for t in callbacks["spec"]["tls"]
    )
    # Only the API's paths, each to the API's Service; the callbacks' only to theirs.
    paths = {(p["path"], p["pathType"]) for p in rule["http"]["paths"]}
    assert paths == {("/v1", "Prefix"), ("/openapi.json", "Exact")}
    assert {p["backend"]["service"]["name"] for p in rule["http"]["paths"]} == {"callq-api"}
    assert {p["backend"]["service"]["name"] for p in cb_rule["http"]["paths"]} == {
        "callq-callbacks"
    }
    assert not any(p["path"].startswith("/exotel") for p in rule["http"]["paths"])
    for path in rule["http"]["paths"]:
        svc = _one("Service", path["backend"]["service"]["name"])
        assert path["backend"]["service"]["port"]["name"] in {
            p["name"] for p in svc["spec"]["ports"]
        }

    container = _container("callq-api", "api")
    argv = container["command"]
    assert argv[:3] == ["python", "-m", "callq.api"]
    assert argv[argv.index("--port") + 1] == str(container["ports"][0]["containerPort"])
    assert container["livenessProbe"]["httpGet"]["path"] == "/livez"
    assert container["readinessProbe"]["httpGet"]["path"] == "/healthz"
    # The edge's body cap is the API's own default.
    cap = api["metadata"]["annotations"]["nginx.ingress.kubernetes.io/proxy-body-size"]
    assert _mem(cap.replace("m", "Mi")) == Settings(_env_file=None).api_max_body_bytes


def test_flower_uses_basic_auth_and_tcp_probes() -> None:
    flower = _container("callq-flower", "flower")
    assert flower["command"][:4] == ["celery", "-A", "worker", "flower"]
    argv = flower["command"] + flower.get("args", [])
    assert not any("basic-auth" in a for a in argv)  # never on the command line (ps shows it)
    env = {e["name"]: e for e in flower.get("env", [])}
    assert env["FLOWER_BASIC_AUTH"]["valueFrom"]["secretKeyRef"]["key"] == "FLOWER_BASIC_AUTH"
    for probe in ("livenessProbe", "readinessProbe"):
        assert "tcpSocket" in flower[probe] and "httpGet" not in flower[probe]
    assert (
        _one("Deployment", "callq-flower")["spec"]["template"]["spec"]["enableServiceLinks"]
        is False
    )


def test_campaign_cronjob() -> None:
    cron = _one("CronJob", "callq-campaign-reminders")
    spec = cron["spec"]
    assert spec["concurrencyPolicy"] == "Forbid"
    pod = _pod_template(cron)["spec"]  # type: ignore[index]
    (container,) = pod["containers"]
    argv = container["command"] + container.get("args", [])
    assert argv[:2] == ["sh", "-c"] and len(argv) == 3
    script = argv[2]
    assert re.search(
        r"python -m producer enqueue /campaigns/today\.csv --campaign \"?reminders-\$\(date( -u)? \+%F\)",
        script,
    ), script
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    assert mounts["/campaigns"].get("readOnly") is True
    volume = next(v for v in pod["volumes"] if v["name"] == mounts["/campaigns"]["name"])
    assert "configMap" in volume or "persistentVolumeClaim" in volume
    if "configMap" in volume:
        assert any(i["path"] == "today.csv" for i in volume["configMap"].get("items", []))


# --- alerts --------------------------------------------------------------------------------------


def _alerts() -> dict[str, dict[str, Any]]:
    with ALERTS.open(encoding="utf-8") as fh:
        doc = yaml.safe_load(fh)
    rules = [r for g in doc["groups"] for r in g["rules"]]
    alerts = {r["alert"]: r for r in rules if "alert" in r}
    assert len(alerts) == len([r for r in rules if "alert" in r]), "duplicate alert names"
    return alerts


def _balanced(expr: str) -> bool:
    pairs, stack, quote = {")": "(", "]": "[", "}": "{"}, [], None
    for ch in expr:
        if quote:
            quote = None if ch == quote else quote
        elif ch in "\"'":
            quote = ch
        elif ch in "([{":
            stack.append(ch)
        elif ch in pairs and (not stack or stack.pop() != pairs[ch]):
            return False
    return not stack and quote is None


def test_balanced_checker() -> None:
    assert _balanced('sum(rate(x{a="(b"}[5m])) > 0')
    assert not _balanced("sum(rate(x[5m]) > 0")
    assert not _balanced("max(x])")


def _has(expr: str, pattern: str) -> bool:
    return re.search(pattern, " ".join(expr.split())) is not None


def test_alert_rules_cover_the_four_failures() -> None:
    alerts = _alerts()
    assert len(alerts) >= 4
    for name, rule in alerts.items():
        expr = rule["expr"]
        assert isinstance(expr, str) and expr.strip(), name
        assert _balanced(expr), f"{name}: unbalanced brackets or quotes"
        assert re.fullmatch(r"\d+[smhd]", str(rule.get("for", "0s"))), name
        assert rule["labels"]["severity"] in {"info", "warning", "critical"}, name
        assert rule["annotations"]["summary"], name
        # Every callq metric named is one the code exports (catches typos).
        for metric in re.findall(r"\bcallq_[a-z_]+\b", expr):
            assert metric in METRICS, f"{name}: unknown metric {metric}"
        for rng in re.findall(r"\[([^\]]+)\]", expr):
            assert re.fullmatch(r"\d+[smhd]", rng), f"{name}: range [{rng}]"

    def find(pattern: str) -> dict[str, Any]:
        found = [r for r in alerts.values() if _has(r["expr"], pattern)]
        assert found, f"no alert matches {pattern!r}"
        return found[0]

    # 429s: any over 5 minutes.
    find(r"rate\(callq_rate_limited_total\[5m\]\)\)? > 0\b")

    # In-doubt calls growing over 15 minutes and above 10.
    in_doubt = find(r"(deriv|increase|delta)\(callq_in_doubt_calls\[15m\]\)")
    assert _has(in_doubt["expr"], r"callq_in_doubt_calls\)? > 10\b")
    assert _has(in_doubt["expr"], r"\) > 0\b") and " and " in f" {in_doubt['expr']} "

    # Breaker open for a minute.
    breaker = find(r"callq_breaker_open\)? == 1\b")
    assert breaker["for"] == "1m"

    # Worker down.
    down = [
        r
        for r in alerts.values()
        if _has(r["expr"], r"absent\(up\{[^}]*callq-worker")
        or _has(r["expr"], r"up\{[^}]*callq-worker[^}]*\} == 0")
    ]
    assert down, "no worker-down alert"
