"""The Kubernetes manifests with the environment a pod really gets, and what `apply` reads.

No cluster here: ``pod_environment`` builds a container's environment the way the kubelet does
(image ENV, then the Service link variables of every Service in the namespace unless
``enableServiceLinks: false``, with the container's own ``env`` winning over both), and a real
`orc serve` starts with it. The pod's network namespace is not rehearsed: the server listens on a
free loopback port given by ``--port``, as a port mapping would; ORC_PORT is still read and checked.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy_support import REPO, dockerfile_env
from tests.support import OrcServer, base_env, run_orc

K8S = REPO / "deploy" / "k8s"
TOKEN = "k8s-token-" + "q7Zp" * 10
# What the kubelet injects for the API server's own Service, whatever the pod spec says.
KUBERNETES_SERVICE = {"KUBERNETES_SERVICE_HOST": "10.0.0.1", "KUBERNETES_SERVICE_PORT": "443"}


def _documents(*names: str) -> list[dict[str, Any]]:
    return [doc for name in names for doc in yaml.safe_load_all((K8S / name).read_text()) if doc]


def _deployment(docs: list[dict[str, Any]]) -> dict[str, Any]:
    return next(d for d in docs if d["kind"] == "Deployment")


def service_link_variables(service: dict[str, Any], cluster_ip: str) -> dict[str, str]:
    """The docker-links style variables the kubelet makes for one Service."""
    prefix = service["metadata"]["name"].upper().replace("-", "_")
    ports = service["spec"]["ports"]
    first = ports[0]
    env = {
        f"{prefix}_SERVICE_HOST": cluster_ip,
        f"{prefix}_SERVICE_PORT": str(first["port"]),
        f"{prefix}_PORT": f"{first.get('protocol', 'TCP').lower()}://{cluster_ip}:{first['port']}",
    }
    for port in ports:
        proto = port.get("protocol", "TCP")
        number = port["port"]
        if "name" in port:
            env[f"{prefix}_SERVICE_PORT_{port['name'].upper().replace('-', '_')}"] = str(number)
        base = f"{prefix}_PORT_{number}_{proto}"
        env[base] = f"{proto.lower()}://{cluster_ip}:{number}"
        env[base + "_PROTO"] = proto.lower()
        env[base + "_PORT"] = str(number)
        env[base + "_ADDR"] = cluster_ip
    return env


def pod_environment(
    deployment: dict[str, Any],
    services: list[dict[str, Any]],
    secrets: dict[str, str],
    image_env: dict[str, str],
) -> dict[str, str]:
    """The first container's environment as the kubelet would set it."""
    pod = deployment["spec"]["template"]["spec"]
    links: dict[str, str] = dict(KUBERNETES_SERVICE)
    if pod.get("enableServiceLinks", True):
        for number, service in enumerate(services, start=10):
            links.update(service_link_variables(service, f"10.96.0.{number}"))
    explicit: dict[str, str] = {}
    for item in pod["containers"][0].get("env", []):
        if "value" in item:
            explicit[item["name"]] = str(item["value"])
        else:
            explicit[item["name"]] = secrets[item["valueFrom"]["secretKeyRef"]["key"]]
    # The container's env wins over Service links; both win over the image's ENV.
    return {**image_env, **links, **explicit}


@pytest.fixture
def manifests() -> tuple[dict[str, Any], list[dict[str, Any]]]:
    docs = _documents("deployment.yaml", "service.yaml")
    return _deployment(docs), [d for d in docs if d["kind"] == "Service"]


def _orc_env(tmp_path: Path, rendered: dict[str, str]) -> dict[str, str]:
    env = base_env(tmp_path)
    env.update(rendered)
    env["ORC_HOME"] = str(tmp_path / "home")  # the PVC's mount point, moved into tmp_path
    return env


def _secrets(tmp_path: Path) -> dict[str, str]:
    return {"database-url": f"sqlite://{tmp_path / 'orc.db'}", "auth-token": TOKEN}


def test_orc_starts_with_the_environment_kubernetes_gives_the_pod(tmp_path: Path, manifests):
    deployment, services = manifests
    rendered = pod_environment(deployment, services, _secrets(tmp_path), dockerfile_env())
    container_port = deployment["spec"]["template"]["spec"]["containers"][0]["ports"][0]
    assert rendered["ORC_PORT"] == str(container_port["containerPort"])
    assert not any(v.startswith("tcp://") for k, v in rendered.items() if k.startswith("ORC_"))

    server = OrcServer(_orc_env(tmp_path, rendered), "--no-worker")
    try:
        server.start()
        assert server.get("/api/health").json()["status"] == "ok"
        code, _ = server.terminate()
        assert code == 0, server.logs()
    finally:
        server.kill()


@pytest.mark.parametrize("fix", ["enableServiceLinks", "explicit ORC_PORT"])
def test_either_fix_alone_keeps_the_injected_port_away(tmp_path: Path, manifests, fix: str):
    deployment, services = copy.deepcopy(manifests)
    pod = deployment["spec"]["template"]["spec"]
    if fix == "enableServiceLinks":
        pod["containers"][0]["env"] = [
            e for e in pod["containers"][0]["env"] if e["name"] != "ORC_PORT"
        ]
    else:
        del pod["enableServiceLinks"]
    rendered = pod_environment(deployment, services, _secrets(tmp_path), dockerfile_env())
    assert rendered["ORC_PORT"] == "8080"


def test_without_the_fixes_the_injected_port_stops_orc(tmp_path: Path, manifests):
    """The model reproduces the crash loop that Kubernetes users saw (exit 2 on ORC_PORT)."""
    deployment, services = copy.deepcopy(manifests)
    pod = deployment["spec"]["template"]["spec"]
    del pod["enableServiceLinks"]
    pod["containers"][0]["env"] = [
        e for e in pod["containers"][0]["env"] if e["name"] != "ORC_PORT"
    ]
    rendered = pod_environment(deployment, services, _secrets(tmp_path), dockerfile_env())
    assert rendered["ORC_PORT"].startswith("tcp://10.96.0.")
    result = run_orc(["config", "show"], _orc_env(tmp_path, rendered))
    assert result.returncode == 2
    assert "ORC_PORT=" in result.stderr


def test_kubectl_apply_on_the_folder_reads_no_secret():
    """`kubectl apply -f deploy/k8s` reads the folder's own .yaml/.yml/.json files, not subfolders:
    an example Secret there would overwrite the real one with a placeholder."""
    applied = [p for p in K8S.iterdir() if p.is_file() and p.suffix in {".yaml", ".yml", ".json"}]
    kinds = {doc["kind"] for path in applied for doc in yaml.safe_load_all(path.read_text()) if doc}
    assert kinds == {"Deployment", "Service", "PersistentVolumeClaim", "Ingress"}
    assert (K8S / "examples" / "secret.yaml").exists()
