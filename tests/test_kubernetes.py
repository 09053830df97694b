"""The Kubernetes manifests (deploy/kubernetes/): valid against the Kubernetes API schemas (offline,
kubernetes-validate), consistent with each other, and with the gateway they run: its settings, its
commands, and the listeners its probes reach."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import aiohttp
import kubernetes_validate
import pytest
import yaml

from devkit.embedded import free_port
from gateway import cli
from gateway.core import config

MANIFESTS = Path(__file__).resolve().parent.parent / "deploy" / "kubernetes"
# The oldest Kubernetes the manifests are for (autoscaling/v2, policy/v1 and the fields used are
# GA there), and the newest whose schemas the package ships.
VERSIONS = ("1.29.0", kubernetes_validate.latest_version())


def documents() -> dict[str, dict]:
    """Every resource by kind (one of each kind)."""
    found: dict[str, dict] = {}
    for path in sorted(MANIFESTS.glob("*.yaml")):
        for document in yaml.safe_load_all(path.read_text()):
            assert document["kind"] not in found, f"two {document['kind']}s"
            found[document["kind"]] = document
    return found


KINDS = ("ConfigMap", "Secret", "Deployment", "Service", "HorizontalPodAutoscaler", "PodDisruptionBudget", "Job",
         "NetworkPolicy")


def test_every_kind_the_gateway_needs_is_there():
    assert sorted(documents()) == sorted(KINDS)


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("kind", KINDS)
def test_each_manifest_is_valid_for_the_kubernetes_api_strictly(kind, version):
    # strict: a misspelt or misplaced field is an error, not silently dropped by the API server.
    kubernetes_validate.validate(documents()[kind], version, strict=True)


def _pod(kind: str) -> dict:
    return documents()[kind]["spec"]["template"]["spec"]


def _container(kind: str) -> dict:
    (container,) = _pod(kind)["containers"]
    return container


def _settings_environment() -> dict[str, str]:
    found = documents()
    return {**found["ConfigMap"]["data"], **found["Secret"]["stringData"]}


def test_the_configmap_and_the_secret_name_real_settings_that_serve_accepts():
    fields = {field.name for field in dataclasses.fields(config.Settings)}
    environment = _settings_environment()
    unknown = [name for name in environment if name.removeprefix(config.PREFIX).lower() not in fields]
    assert unknown == []
    settings = config.load(environ=environment)
    settings.require("database_url", "redis_url", "target_url", "jwt_secret")
    assert settings.mail_sender != "log"  # `serve` refuses it
    secret_names = {name for name, value in environment.items() if isinstance(getattr(
        settings, name.removeprefix(config.PREFIX).lower()), config.Secret)}
    assert secret_names == set(documents()["Secret"]["stringData"])  # every secret in the Secret, only those


def test_the_pods_take_their_settings_from_the_configmap_and_the_secret_and_run_the_right_commands():
    found = documents()
    sources = [{"configMapRef": {"name": found["ConfigMap"]["metadata"]["name"]}},
               {"secretRef": {"name": found["Secret"]["metadata"]["name"]}}]
    for kind, command in (("Deployment", "serve"), ("Job", "migrate")):
        container = _container(kind)
        assert container["envFrom"] == sources and "env" not in container
        assert container["command"][0] == "tollgate"
        assert cli.build_parser().parse_args(container["command"][1:]).command == command
    assert _container("Deployment")["image"] == _container("Job")["image"]
    assert _pod("Job")["restartPolicy"] == "Never"


def test_the_service_the_autoscaler_and_the_disruption_budget_point_at_the_deployment():
    found = documents()
    deployment = found["Deployment"]
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert deployment["spec"]["selector"]["matchLabels"] == labels
    assert found["Service"]["spec"]["selector"] == labels
    assert found["PodDisruptionBudget"]["spec"]["selector"]["matchLabels"] == labels
    assert found["NetworkPolicy"]["spec"]["podSelector"]["matchLabels"] == labels
    target = found["HorizontalPodAutoscaler"]["spec"]["scaleTargetRef"]
    assert (target["kind"], target["name"]) == ("Deployment", deployment["metadata"]["name"])
    assert found["HorizontalPodAutoscaler"]["spec"]["minReplicas"] >= 2  # a drain never takes the last pod
    # The autoscaler needs a CPU request to compute utilisation against.
    assert "cpu" in _container("Deployment")["resources"]["requests"]
    (port,) = found["Service"]["spec"]["ports"]
    assert port["targetPort"] == "http"


def test_the_probes_reach_the_listeners_the_settings_open():
    container = _container("Deployment")
    ports = {port["name"]: port["containerPort"] for port in container["ports"]}
    settings = config.load(environ=_settings_environment())
    assert ports == {"http": settings.port, "metrics": settings.metrics_port}
    assert settings.metrics_host == "0.0.0.0"  # the kubelet probes the pod's address
    assert container["livenessProbe"]["httpGet"] == {"path": "/health", "port": "http"}
    # With a metrics port, /ready is served there only (the public port answers 404 for it).
    assert container["readinessProbe"]["httpGet"] == {"path": "/ready", "port": "metrics"}
    assert not settings.metrics_token  # a probe cannot send a token from the Secret


async def test_a_gateway_configured_so_answers_the_probes_on_those_listeners(gateway_factory):
    metrics_port = free_port()
    gateway = await gateway_factory(metrics_host="127.0.0.1", metrics_port=metrics_port)
    assert (await gateway.get("/health")).status == 200
    assert (await gateway.get("/ready")).status == 404
    async with aiohttp.ClientSession() as session:
        async with session.get(f"http://127.0.0.1:{metrics_port}/ready") as response:
            assert response.status == 200
            assert (await response.json())["status"] == "ok"
