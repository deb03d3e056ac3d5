"""The compose Prometheus config and the alert rules, checked and unit-tested with promtool."""

from __future__ import annotations

import subprocess

import yaml

from tests.deploy.conftest import DEPLOY, REPO


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(args, capture_output=True, text=True, cwd=REPO)


def test_config_is_valid(promtool, tmp_path):
    config = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    assert config["scrape_configs"][0]["static_configs"][0]["targets"] == ["sampler:8000"]
    # the container path of the rules, pointed at this repository's copy
    config["rule_files"] = [str(DEPLOY / "prometheus" / "rules" / "*.yml")]
    path = tmp_path / "prometheus.yml"
    path.write_text(yaml.safe_dump(config))
    result = run(promtool, "check", "config", str(path))
    assert result.returncode == 0 and "1 rule files found" in result.stdout, result.stderr


def test_rules_are_valid(promtool):
    result = run(promtool, "check", "rules", str(DEPLOY / "prometheus" / "rules" / "sampler.yml"))
    assert result.returncode == 0, result.stdout + result.stderr


def test_rules_unit_tests_pass(promtool):
    result = run(promtool, "test", "rules", "tests/deploy/rules_test.yml")
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_alert_has_a_unit_test():
    rules = yaml.safe_load((DEPLOY / "prometheus" / "rules" / "sampler.yml").read_text())
    alerts = {r["alert"] for g in rules["groups"] for r in g["rules"] if "alert" in r}
    tests = yaml.safe_load((REPO / "tests" / "deploy" / "rules_test.yml").read_text())
    tested = {
        t["alertname"]
        for case in tests["tests"]
        for t in case["alert_rule_test"]
        if t["exp_alerts"]
    }
    assert (
        alerts
        == tested
        == {
            "SamplerP99LatencyHigh",
            "SamplerErrorRatioHigh",
            "SamplerInteractiveP99High",
            "SamplerQueueSaturated",
            "SamplerKLRegression",
        }
    )
