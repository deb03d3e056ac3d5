"""Kubernetes manifests, validated offline against the Kubernetes schemas."""

from __future__ import annotations

import subprocess
from urllib.parse import quote, urlsplit

import kubernetes_validate
import pytest
import yaml

from tests.deploy.conftest import DEPLOY

K8S_VERSION = "1.31.0"
MANIFESTS = sorted((DEPLOY / "k8s").rglob("*.yaml"))


def load(name: str) -> dict:
    return yaml.safe_load((DEPLOY / "k8s" / name).read_text())


@pytest.mark.parametrize("path", MANIFESTS, ids=lambda p: str(p.relative_to(DEPLOY)))
def test_manifest_is_valid(path):
    for doc in yaml.safe_load_all(path.read_text()):
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


def test_validation_can_fail():
    doc = load("deployment.yaml")
    doc["spec"]["replicas"] = "two"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


def container(doc: dict) -> dict:
    return doc["spec"]["template"]["spec"]["containers"][0]


def test_deployments_probe_and_budget_resources():
    for name in ("deployment.yaml", "gpu/deployment.yaml"):
        c = container(load(name))
        assert c["readinessProbe"]["httpGet"]["path"] == "/readyz"
        assert c["livenessProbe"]["httpGet"]["path"] == "/healthz"
        assert {"cpu", "memory"} <= set(c["resources"]["requests"])
    gpu = container(load("gpu/deployment.yaml"))
    assert gpu["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert {"name": "DEVICE", "value": "cuda"} in gpu["env"]


def test_selectors_do_not_overlap_and_the_service_reaches_both():
    cpu = load("deployment.yaml")["spec"]["selector"]["matchLabels"]
    gpu = load("gpu/deployment.yaml")["spec"]["selector"]["matchLabels"]
    assert cpu["dgs/accelerator"] != gpu["dgs/accelerator"]
    service = load("service.yaml")["spec"]["selector"]
    assert service.items() <= cpu.items() and service.items() <= gpu.items()


def test_hpa_scales_on_cpu_and_queue_depth():
    metrics = load("hpa.yaml")["spec"]["metrics"]
    assert {m["type"] for m in metrics} == {"Resource", "Pods"}
    pods = next(m for m in metrics if m["type"] == "Pods")["pods"]["metric"]["name"]
    adapter = yaml.safe_load(load("prometheus-adapter.yaml")["data"]["config.yaml"])
    assert adapter["rules"][0]["name"]["as"] == pods == "sampler_queue_rows"


def env(doc: dict) -> dict[str, dict]:
    return {e["name"]: e for e in container(doc)["env"]}


def test_the_samplers_share_the_postgres_of_the_statefulset():
    secret, service = load("postgres-secret.yaml"), load("postgres-service.yaml")
    sts = load("postgres-statefulset.yaml")
    pg = env(sts)
    password_ref = pg["POSTGRES_PASSWORD"]["valueFrom"]["secretKeyRef"]
    assert password_ref == {"name": secret["metadata"]["name"], "key": "password"}
    # the placeholder goes into the URL as is, as must the password that replaces it
    password = secret["stringData"]["password"]
    assert "REPLACE" in password and quote(password, safe="") == password
    for name in ("deployment.yaml", "gpu/deployment.yaml"):
        variables = [e["name"] for e in container(load(name))["env"]]
        sampler = env(load(name))
        assert sampler["POSTGRES_PASSWORD"]["valueFrom"]["secretKeyRef"] == password_ref
        url = urlsplit(sampler["DATABASE_URL"]["value"])
        assert url.scheme == "postgresql+psycopg" and url.hostname == service["metadata"]["name"]
        assert url.port == service["spec"]["ports"][0]["port"] == 5432
        assert (url.username, url.path) == (
            pg["POSTGRES_USER"]["value"],
            "/" + pg["POSTGRES_DB"]["value"],
        )
        # Kubernetes expands $(VAR) only from variables defined before it
        assert url.password == "$(POSTGRES_PASSWORD)"
        assert variables.index("POSTGRES_PASSWORD") < variables.index("DATABASE_URL")


def test_postgres_statefulset_service_and_volume():
    service, sts = load("postgres-service.yaml"), load("postgres-statefulset.yaml")
    assert sts["spec"]["serviceName"] == service["metadata"]["name"]
    assert service["spec"]["clusterIP"] == "None"  # headless: the StatefulSet's pod
    labels = sts["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= labels.items()
    assert sts["spec"]["selector"]["matchLabels"].items() <= labels.items()
    # the sampler's Service and PDB do not pick up the database
    for sampler in (load("service.yaml")["spec"]["selector"], load("pdb.yaml")["spec"]["selector"]):
        assert not sampler.get("matchLabels", sampler).items() <= labels.items()
    c = container(sts)
    assert c["image"].startswith("postgres:") and not c["image"].endswith(":latest")
    ports = {p["name"] for p in c["ports"]}
    assert service["spec"]["ports"][0]["targetPort"] in ports
    assert "pg_isready" in c["readinessProbe"]["exec"]["command"]
    (claim,) = sts["spec"]["volumeClaimTemplates"]
    (mount,) = c["volumeMounts"]
    assert mount["name"] == claim["metadata"]["name"]
    assert env(sts)["PGDATA"]["value"].startswith(mount["mountPath"] + "/")


def test_job_runs_the_worker():
    job = load("job-train.yaml")
    assert container(job)["command"][:2] == ["dgs", "train"]
    assert job["spec"]["template"]["spec"]["restartPolicy"] == "Never"


def test_in_cluster_scrape_config_passes_promtool(promtool, tmp_path):
    config = yaml.safe_load(load("prometheus-scrape.yaml")["data"]["prometheus.yml"])
    config["rule_files"] = [str(DEPLOY / "prometheus" / "rules" / "*.yml")]
    # Debian's Prometheus is built without Kubernetes discovery; everything else (the
    # relabelling above all) is checked as written.
    job = config["scrape_configs"][0]
    assert job.pop("kubernetes_sd_configs") == [{"role": "pod"}]
    job["static_configs"] = [{"targets": ["127.0.0.1:8000"]}]
    path = tmp_path / "prometheus.yml"
    path.write_text(yaml.safe_dump(config))
    result = subprocess.run(
        [promtool, "check", "config", str(path)], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr
