"""The Kubernetes manifests, the Dockerfile and the compose files agree with each other and with the app.

Static checks, no cluster or engine: the manifests parse, the probes hit routes the Flask app has,
ports, paths and users match the image, resources are consistent. scripts/docker_smoke.sh proves
the image and compose files on a real engine.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
DOCKERFILE = ROOT / "Dockerfile"


# --- helpers -------------------------------------------------------------------------------------

def dockerfile_instructions(path: Path = DOCKERFILE) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) per instruction, continuation lines joined, comments dropped."""
    instructions: list[tuple[str, str]] = []
    pending = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        full = (pending + line).strip()
        pending = ""
        keyword, _, rest = full.partition(" ")
        instructions.append((keyword.upper(), rest.strip()))
    return instructions


def runtime_stage() -> list[tuple[str, str]]:
    """The instructions of the last stage (the image that runs)."""
    instructions = dockerfile_instructions()
    last_from = max(i for i, (keyword, _) in enumerate(instructions) if keyword == "FROM")
    return instructions[last_from:]


def dockerfile_env() -> dict[str, str]:
    env: dict[str, str] = {}
    for keyword, rest in runtime_stage():
        if keyword == "ENV":
            for token in shlex.split(rest):
                name, _, value = token.partition("=")
                env[name] = value
    return env


def parse_quantity(value: str | int | float) -> float:
    """Kubernetes quantities: "500m" CPU, "800Mi" / "1.2Gi" / "1G" memory, plain numbers."""
    text = str(value)
    suffixes = {"m": 1e-3, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12,
                "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40}
    match = re.fullmatch(r"([0-9.]+)([a-zA-Z]*)", text)
    assert match, f"not a quantity: {text!r}"
    number, suffix = match.groups()
    return float(number) * (suffixes[suffix] if suffix else 1.0)


def load_documents(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]


@pytest.fixture(scope="module")
def manifests() -> dict[str, dict[str, Any]]:
    """The base's resources (as kustomization.yaml lists them), by kind."""
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    by_kind: dict[str, dict[str, Any]] = {}
    for name in kustomization["resources"]:
        for doc in load_documents(K8S / name):
            assert doc["kind"] not in by_kind, f"two {doc['kind']} resources"
            by_kind[doc["kind"]] = doc
    return by_kind


@pytest.fixture(scope="module")
def container(manifests) -> dict[str, Any]:
    containers = manifests["Deployment"]["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return containers[0]


def app_routes(app) -> set[str]:
    return {rule.rule for rule in app.url_map.iter_rules()}


def named_port(container: dict[str, Any], port: str | int) -> int:
    if isinstance(port, int):
        return port
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert port in ports, f"probe port {port!r} is not a named container port ({sorted(ports)})"
    return ports[port]


# --- the manifests -------------------------------------------------------------------------------

def test_every_manifest_parses_and_is_listed_in_the_kustomization():
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    listed = set(kustomization["resources"])
    on_disk = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    assert listed == on_disk
    for name in listed:
        for doc in load_documents(K8S / name):
            assert {"apiVersion", "kind", "metadata"} <= set(doc), name


def test_kinds_and_api_versions(manifests):
    assert {kind: doc["apiVersion"] for kind, doc in manifests.items()} == {
        "Deployment": "apps/v1",
        "Service": "v1",
        "HorizontalPodAutoscaler": "autoscaling/v2",
        "PodDisruptionBudget": "policy/v1",
    }


def test_deployment_replicas_and_selector(manifests):
    spec = manifests["Deployment"]["spec"]
    assert spec["replicas"] == 2
    labels = spec["template"]["metadata"]["labels"]
    assert spec["selector"]["matchLabels"].items() <= labels.items()
    assert manifests["Service"]["spec"]["selector"].items() <= labels.items()
    assert manifests["PodDisruptionBudget"]["spec"]["selector"]["matchLabels"].items() <= labels.items()


def test_probes_hit_the_apps_health_routes(app, container):
    routes = app_routes(app)
    readiness = container["readinessProbe"]["httpGet"]
    liveness = container["livenessProbe"]["httpGet"]
    assert readiness["path"] == "/v2/health/ready"
    assert liveness["path"] == "/v2/health/live"
    for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
        http = container[probe]["httpGet"]
        assert http["path"] in routes, f"{probe} path {http['path']} is not a route of the app"
        assert named_port(container, http["port"]) == container["ports"][0]["containerPort"]


def test_the_health_routes_answer(client):
    assert client.get("/v2/health/live").status_code == 200
    assert client.get("/v2/health/ready").status_code == 200


def test_container_port_matches_the_dockerfile(container):
    env = dockerfile_env()
    exposed = [rest for keyword, rest in runtime_stage() if keyword == "EXPOSE"]
    assert exposed == ["8501"]
    bind_port = int(env["BIND"].rpartition(":")[2])
    assert env["BIND"].startswith("0.0.0.0:"), "inside a container the server must listen on every interface"
    ports = container["ports"]
    assert [(p["name"], p["containerPort"]) for p in ports] == [("http", bind_port)]
    assert bind_port == int(exposed[0])
    deployment_env = {e["name"]: e.get("value") for e in container["env"]}
    if "BIND" in deployment_env:
        assert int(deployment_env["BIND"].rpartition(":")[2]) == bind_port


def test_service_targets_the_named_port(manifests, container):
    (port,) = manifests["Service"]["spec"]["ports"]
    assert named_port(container, port["targetPort"]) == container["ports"][0]["containerPort"]


def test_resources_limits_cover_requests(container):
    resources = container["resources"]
    for name in ("cpu", "memory"):
        request = parse_quantity(resources["requests"][name])
        limit = parse_quantity(resources["limits"][name])
        assert 0 < request <= limit, name
    workers = int({e["name"]: e.get("value") for e in container["env"]}["WEB_CONCURRENCY"])
    # ~350 MiB per worker (every worker loads every model), plus the master and headroom.
    assert parse_quantity(resources["requests"]["memory"]) >= workers * 350 * 2**20
    assert parse_quantity(resources["limits"]["memory"]) > parse_quantity(resources["requests"]["memory"])


def test_hpa_scales_the_deployment_on_cpu(manifests):
    spec = manifests["HorizontalPodAutoscaler"]["spec"]
    target = spec["scaleTargetRef"]
    assert (target["kind"], target["name"]) == ("Deployment", manifests["Deployment"]["metadata"]["name"])
    assert 2 <= spec["minReplicas"] <= spec["maxReplicas"]
    (metric,) = spec["metrics"]
    assert metric["type"] == "Resource" and metric["resource"]["name"] == "cpu"


def test_runs_as_non_root_with_a_read_only_root_and_a_writable_tmp(manifests, container):
    pod = manifests["Deployment"]["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert "emptyDir" in volumes[mounts["/tmp"]]
    (user,) = [rest for keyword, rest in runtime_stage() if keyword == "USER"]
    uid = user.partition(":")[0]
    assert uid.isdigit() and int(uid) != 0, "USER must be a numeric non-root uid (runAsNonRoot can check it)"
    assert pod["securityContext"]["runAsUser"] == int(uid)
    assert dockerfile_env()["HOME"].startswith("/tmp")


def test_drain_fits_in_the_grace_periods(manifests, container):
    env = {e["name"]: e.get("value") for e in container["env"]}
    drain, graceful = float(env["DRAIN_SECONDS"]), float(env["GRACEFUL_TIMEOUT"])
    assert drain < graceful < manifests["Deployment"]["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]


def test_models_path_matches_the_image_and_the_pvc_component(container):
    image_models = dockerfile_env()["MODEL_BASE_PATH"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["MODEL_BASE_PATH"] == image_models
    component = K8S / "components" / "models-pvc"
    kustomization = yaml.safe_load((component / "kustomization.yaml").read_text())
    assert kustomization["kind"] == "Component"
    (pvc,) = load_documents(component / "pvc.yaml")
    assert pvc["kind"] == "PersistentVolumeClaim"
    (patch,) = kustomization["patches"]
    operations = yaml.safe_load((component / patch["path"]).read_text())
    values = [op["value"] for op in operations]
    assert {"name": "models", "mountPath": image_models, "readOnly": True} in values
    volume = next(v for v in values if "persistentVolumeClaim" in v)
    assert volume["persistentVolumeClaim"]["claimName"] == pvc["metadata"]["name"]


# --- the Dockerfile ------------------------------------------------------------------------------

def test_healthcheck_uses_the_readiness_route(app, container):
    (healthcheck,) = [rest for keyword, rest in runtime_stage() if keyword == "HEALTHCHECK"]
    paths = re.findall(r"/v2/health/\w+", healthcheck)
    assert paths == [container["readinessProbe"]["httpGet"]["path"]]
    assert paths[0] in app_routes(app)
    assert "urllib" in healthcheck, "slim images may have no curl"


def test_runtime_stage_copies_only_what_serves():
    copies = [rest for keyword, rest in runtime_stage() if keyword == "COPY"]
    sources = {token for rest in copies for token in rest.split()[:-1] if not token.startswith("--")}
    assert sources <= {"/opt/venv", "pyproject.toml", "service/", "preprocessing/", "models/"}, sources
    cmd = next(rest for keyword, rest in runtime_stage() if keyword == "CMD")
    assert cmd.startswith("["), "exec-form CMD: gunicorn is PID 1 and gets the signals"
    assert "service/gunicorn_conf.py" in cmd


# --- compose -------------------------------------------------------------------------------------

class _ComposeLoader(yaml.SafeLoader):
    """Compose's YAML: `!reset` and `!override` tags as plain values."""


_ComposeLoader.add_constructor("!reset", lambda loader, node: None)
_ComposeLoader.add_constructor(
    "!override", lambda loader, node: loader.construct_sequence(node) if isinstance(node, yaml.SequenceNode)
    else loader.construct_mapping(node))


def test_compose_files_agree_with_the_image():
    base = yaml.load((ROOT / "docker-compose.yml").read_text(), Loader=_ComposeLoader)
    host = yaml.load((ROOT / "docker-compose.host.yml").read_text(), Loader=_ComposeLoader)
    server = base["services"]["server"]
    assert any(str(p).endswith(":8501") for p in server["ports"])
    assert any(v.endswith(f":{dockerfile_env()['MODEL_BASE_PATH']}:ro") for v in server["volumes"])
    assert server["read_only"] is True and "/tmp" in server["tmpfs"]
    assert {"locust-master", "locust-worker"} <= set(base["services"])
    for name, service in base["services"].items():
        if name.startswith("locust"):
            assert service["profiles"] == ["loadtest"]
    for name, service in host["services"].items():
        assert service["network_mode"] == "host", name
        if "build" in service:
            assert service["build"]["network"] == "host", name
    assert host["services"]["server"]["environment"]["BIND"].startswith("127.0.0.1:")
