"""The Prometheus exposition: the series a proxied request leaves, and the alert rules and dashboard over it."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

from tests.support.accounts import make_token, proxy_headers


async def test_metrics_expose_request_auth_and_session_series(gateway, database):
    issued = await make_token(database)
    await gateway.get("/api/v1/proxy/echo/x", headers=proxy_headers(issued.token))
    response = await gateway.get("/metrics")
    text = await response.text()
    assert response.status == 200
    assert response.headers["Content-Type"].startswith("text/plain")
    for series in ('tollgate_http_requests_total{method="GET",outcome="ok",route="proxy",status="200"}',
                   'tollgate_auth_cache_lookups_total{result="postgres_fallback"}',
                   "tollgate_http_request_duration_seconds_bucket", "tollgate_upstream_requests_total",
                   "tollgate_rate_limited_total", "tollgate_session_updates_flushed_total"):
        assert series in text, series


# -- the operator's kit: alert rules and the dashboard over the series /metrics really has --------

ROOT = Path(__file__).resolve().parents[2]
ALERTS = ROOT / "deploy" / "prometheus" / "alerts.yml"
ALERT_TESTS = ROOT / "deploy" / "prometheus" / "alerts_test.yml"
DASHBOARD = ROOT / "deploy" / "grafana" / "tollgate.json"
# The series a family of each type exposes, by the suffix prometheus_client gives its samples.
SAMPLE_SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "gauge": ("",)}
# Grafana's variables, as a query would run with "All" gateways over the last hour.
GRAFANA_VARIABLES = {"$__rate_interval": "1m", "$instance": ".*"}


def promtool(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["promtool", *args], capture_output=True, text=True, timeout=60)


def dashboard_queries() -> list[str]:
    queries = []
    for panel in json.loads(DASHBOARD.read_text())["panels"]:
        for target in panel.get("targets", []):
            query = target["expr"]
            for variable, value in GRAFANA_VARIABLES.items():
                query = query.replace(variable, value)
            queries.append(query)
    return queries


def exposed_series(text: str) -> set[str]:
    families = re.findall(r"^# TYPE (\w+) (\w+)$", text, re.M)
    return {name.removesuffix("_total") + suffix if kind == "counter" else name + suffix
            for name, kind in families for suffix in SAMPLE_SUFFIXES.get(kind, ("",))}


def test_the_alert_rules_pass_promtool_and_their_own_unit_tests():
    checked = promtool("check", "rules", str(ALERTS))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    tested = promtool("test", "rules", str(ALERT_TESTS))
    assert tested.returncode == 0, tested.stdout + tested.stderr


def test_every_dashboard_query_is_valid_promql(tmp_path):
    # promtool checks PromQL only inside rule files: each query becomes a recording rule.
    rules = {"groups": [{"name": "dashboard", "rules": [{"record": f"dashboard:query{number}", "expr": query}
                                                          for number, query in enumerate(dashboard_queries())]}]}
    path = tmp_path / "dashboard_rules.yml"
    path.write_text(json.dumps(rules))  # JSON is YAML
    checked = promtool("check", "rules", str(path))
    assert checked.returncode == 0, checked.stdout + checked.stderr


async def test_every_series_the_alerts_and_the_dashboard_name_is_on_metrics(gateway):
    text = await (await gateway.get("/metrics")).text()
    named = set(re.findall(r"\btollgate_\w+", ALERTS.read_text() + "\n".join(dashboard_queries())))
    assert len(named) >= 15
    assert named - exposed_series(text) == set()
