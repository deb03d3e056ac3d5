"""The Dockerfile and the compose files, checked statically (no Docker engine here)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

import yaml
from dockerfile_parse import DockerfileParser

from tests.deploy.conftest import REPO


def instructions(path: Path) -> list[tuple[str, str]]:
    parser = DockerfileParser(path=str(path))
    return [(i["instruction"], i["value"]) for i in parser.structure]


def test_dockerfile_is_multi_stage_slim_non_root_with_healthcheck():
    steps = instructions(REPO / "deploy" / "Dockerfile")
    froms = [v for k, v in steps if k == "FROM"]
    assert len(froms) == 2 and froms[0].endswith("AS build") and froms[1].endswith("AS runtime")
    args = {v.split("=")[0]: v for k, v in steps if k == "ARG"}
    assert "slim" in args["BASE_IMAGE"] and args["TORCH_VARIANT"] == "TORCH_VARIANT=cpu"
    runtime = steps[[i for i, (k, _) in enumerate(steps) if k == "FROM"][1] :]
    users = [v for k, v in runtime if k == "USER"]
    assert users and users[-1] not in ("root", "0")
    assert any(k == "COPY" and "model_store" in v for k, v in runtime)
    health = [v for k, v in runtime if k == "HEALTHCHECK"]
    assert health and "/readyz" in health[0]
    assert [v for k, v in runtime if k == "CMD"][-1] == '["dgs", "serve"]'
    assert any("torch==${TORCH_VERSION}" in v for k, v in steps if k == "RUN")


def test_dockerignore_keeps_the_context_small():
    ignored = (REPO / ".dockerignore").read_text().split()
    for entry in (".git", ".venv", "tests", "experiments", "model_store/**/loss.csv"):
        assert entry in ignored


def copied_sources(steps: list[tuple[str, str]]) -> list[str]:
    """The source paths of every COPY and ADD (flags and the destination left out)."""
    sources = []
    for k, v in steps:
        if k in ("COPY", "ADD"):
            words = [w for w in v.split() if not w.startswith("--")]
            sources += [w.rstrip("/") for w in words[:-1]]
    return sources


def test_the_image_ships_the_served_package_and_not_the_experiments():
    """experiments/ (dgs bench, reproduce) is not served: no COPY of it, nor of the whole
    context (which .dockerignore would then have to filter), and the build copies service/."""
    sources = copied_sources(instructions(REPO / "deploy" / "Dockerfile"))
    assert "service" in sources
    assert not [s for s in sources if s.split("/")[0] == "experiments"], sources
    assert not [s for s in sources if s in (".", "./", "*")], sources


def test_the_experiments_check_can_fail(tmp_path):
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:3.11-slim\nCOPY service /src/service\nCOPY experiments /src/e\n")
    sources = copied_sources(instructions(bad))
    assert [s for s in sources if s.split("/")[0] == "experiments"] == ["experiments"]


def check_compose_schema(*files: Path) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "check_jsonschema",
            "--builtin-schema",
            "vendor.compose-spec",
            *map(str, files),
        ],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_compose_files_follow_the_compose_specification():
    check_compose_schema(REPO / "docker-compose.yml", REPO / "docker-compose.gpu.yml")


def test_compose_schema_check_can_fail(tmp_path):
    bad = tmp_path / "compose.yml"
    bad.write_text("services:\n  sampler:\n    ports: 8000\n    restart: sometimes\n")
    try:
        check_compose_schema(bad)
    except AssertionError:
        return
    raise AssertionError("an invalid compose file passed the schema check")


def test_compose_services_ports_profiles_and_pinned_images():
    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    s = compose["services"]
    assert set(s) == {"sampler", "trainer", "postgres", "prometheus", "grafana"}
    assert s["sampler"]["ports"] == ["8000:8000"] and "healthcheck" in s["sampler"]
    assert "/readyz" in " ".join(s["sampler"]["healthcheck"]["test"])
    assert s["prometheus"]["ports"] == ["9090:9090"] and s["grafana"]["ports"] == ["3000:3000"]
    assert s["trainer"]["profiles"] == ["train"]
    assert s["trainer"]["volumes"] == s["sampler"]["volumes"]  # one shared model store
    for name, svc in s.items():
        image = svc["image"]
        assert ":" in image and not image.endswith(":latest"), (name, image)
    env = s["grafana"]["environment"]
    assert (
        env["GF_AUTH_ANONYMOUS_ENABLED"] == "true" and env["GF_AUTH_ANONYMOUS_ORG_ROLE"] == "Viewer"
    )
    for svc in s.values():  # every bind mount names a file or folder of this repository
        for volume in svc.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("./"):
                assert (REPO / source).exists(), source


def with_defaults(value: str) -> str:
    """A compose value with every ${VAR:-default} replaced by its default."""
    return re.sub(r"\$\{\w+:-([^}]*)\}", r"\1", value)


def test_the_sampler_keeps_its_sweeps_in_the_postgres_service():
    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    s = compose["services"]
    url = urlsplit(with_defaults(s["sampler"]["environment"]["DATABASE_URL"]))
    pg = {k: with_defaults(v) for k, v in s["postgres"]["environment"].items()}
    assert url.scheme == "postgresql+psycopg" and (url.hostname, url.port) == ("postgres", 5432)
    assert (url.username, url.password, url.path) == (
        pg["POSTGRES_USER"],
        pg["POSTGRES_PASSWORD"],
        "/" + pg["POSTGRES_DB"],
    )
    assert s["sampler"]["depends_on"] == {"postgres": {"condition": "service_healthy"}}
    assert "pg_isready" in s["postgres"]["healthcheck"]["test"]
    assert s["postgres"]["image"].startswith("postgres:")
    volume, path = s["postgres"]["volumes"][0].split(":")
    assert path == "/var/lib/postgresql/data" and volume in compose["volumes"]  # named: it stays


def test_compose_defaults_are_resolved_as_compose_would():
    assert with_defaults("a://${U:-dgs}:${P:-}@h/${D:-x}") == "a://dgs:@h/x"


def test_gpu_override_reserves_an_nvidia_device():
    gpu = yaml.safe_load((REPO / "docker-compose.gpu.yml").read_text())["services"]["sampler"]
    device = gpu["deploy"]["resources"]["reservations"]["devices"][0]
    assert device["driver"] == "nvidia" and "gpu" in device["capabilities"]
    assert gpu["build"]["args"]["TORCH_VARIANT"].startswith("cu")
    assert gpu["environment"]["DEVICE"] == "cuda"
