"""The eight daemons as real processes against the real dev stack: health,
readiness per dependency, metrics, API-key auth and roles, admin endpoints,
readiness following Kafka going away and coming back, graceful shutdown."""

import json
import signal
import subprocess

import pytest
from prometheus_client.parser import text_string_to_metric_families

from conftest import (ADMIN_KEY, BIN, DAEMONS, EDITOR_KEY, VIEWER_KEY, Daemon, stop_all_clean,
                      wait_until)

DEFAULT_PORTS = {
    "ingest": 8081, "transcode-worker": 8082, "packager": 8080, "purge-fanout": 8084,
    "drm-license": 8085, "entitlement": 8086, "analytics-sink": 8087, "sfu": 8088,
}


@pytest.fixture(scope="module")
def all_daemons(stack, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("daemons")
    ds = {name: Daemon(name, stack, tmp) for name in DAEMONS}
    try:
        for d in ds.values():
            d.wait_healthy()
        for d in ds.values():
            d.wait_ready()
        yield ds
    finally:
        stop_all_clean(ds.values())


@pytest.mark.parametrize("name", sorted(DAEMONS))
def test_healthy_and_ready_with_its_dependencies(all_daemons, name):
    d = all_daemons[name]
    assert d.get("/healthz").json() == {"status": "ok"}
    r = d.get("/readyz")
    assert r.status_code == 200
    body = r.json()
    assert body["status"] == "ready"
    assert set(body["checks"]) == DAEMONS[name]
    assert all(c["ok"] for c in body["checks"].values())


@pytest.mark.parametrize("name", sorted(DAEMONS))
def test_metrics_parse_as_prometheus_text(all_daemons, name):
    r = all_daemons[name].get("/metrics")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/plain; version=0.0.4")
    families = {f.name: f for f in text_string_to_metric_families(r.text)}
    (info,) = families["castbus_build_info"].samples
    assert info.labels["daemon"] == name and info.value == 1
    assert families["castbus_ready"].samples[0].value == 1
    deps = {s.labels["dependency"]: s.value for s in families["castbus_dependency_up"].samples}
    assert deps == {dep: 1 for dep in DAEMONS[name]}
    for m in ("process_cpu_seconds", "process_resident_memory_bytes", "process_open_fds",
              "castbus_http_requests", "castbus_http_request_duration_seconds"):
        assert m in families, f"{m} missing from /metrics"


@pytest.mark.parametrize("name", sorted(DAEMONS))
def test_api_keys_and_roles(all_daemons, name):
    d = all_daemons[name]
    r = d.get("/v1/info")
    assert r.status_code == 401
    assert r.json()["error"]["code"] == "unauthorized"
    assert r.headers["www-authenticate"].startswith("Bearer")
    assert d.get("/v1/info", key="not-a-key").status_code == 401
    info = d.get("/v1/info", key=VIEWER_KEY)
    assert info.status_code == 200
    assert info.json()["daemon"] == name
    assert info.json()["ready"] is True
    # a viewer or editor key on an admin route: forbidden
    for key in (VIEWER_KEY, EDITOR_KEY):
        r = d.get("/v1/config", key=key)
        assert r.status_code == 403
        assert r.json()["error"]["code"] == "forbidden"
    cfg = d.get("/v1/config", key=ADMIN_KEY).json()
    assert cfg["api_keys"]["value"] == "(set)"
    assert cfg["http_port"] == {"value": str(d.port), "source": "env"}
    for secret in ("pg_dsn", "redis_url"):
        if secret in cfg:
            assert cfg[secret]["value"] == "(set)"


def test_errors_are_json_with_request_ids(all_daemons):
    d = all_daemons["ingest"]
    r = d.get("/v1/nothing-here", headers={"X-Request-Id": "itest-trace-1"})
    assert r.status_code == 404
    assert r.headers["x-request-id"] == "itest-trace-1"
    assert r.json()["error"] == {"code": "not_found", "message": "no such resource: /v1/nothing-here",
                                 "request_id": "itest-trace-1"}
    r = d.request("DELETE", "/v1/info", key=ADMIN_KEY)
    assert r.status_code == 405
    assert r.headers["allow"] == "GET"
    lines = [e for e in d.log_lines() if e.get("request_id") == "itest-trace-1"]
    assert lines and "404" in lines[0]["msg"]


def test_log_level_can_be_changed_at_runtime(all_daemons):
    d = all_daemons["sfu"]
    r = d.request("PUT", "/v1/log-level", key=ADMIN_KEY, json={"level": "debug"})
    assert r.status_code == 200
    assert r.json() == {"level": "debug", "previous": "info"}
    bad = d.request("PUT", "/v1/log-level", key=ADMIN_KEY, json={"level": "loud"})
    assert bad.status_code == 400
    assert bad.json()["error"]["field"] == "level"
    d.get("/healthz")
    wait_until(lambda: any(e.get("level") == "debug" and "/healthz" in e.get("msg", "")
                           for e in d.log_lines()), 10, what="a debug access log line")
    d.request("PUT", "/v1/log-level", key=ADMIN_KEY, json={"level": "info"})


def test_logs_are_json_lines(all_daemons):
    for name, d in all_daemons.items():
        lines = d.log_lines()
        assert lines, f"{name} wrote no log"
        bad = [e for e in lines if e.get("not_json")]
        assert not bad, f"{name} wrote non-JSON log lines: {bad[:3]}"
        for e in lines:
            assert {"ts", "level", "daemon", "msg"} <= set(e)
            assert e["daemon"] == name


def test_readiness_follows_kafka(stack, start_daemon):
    """Every daemon that uses Kafka turns unready when it goes away and ready when it is
    back; the daemons that do not use it stay ready throughout."""
    with_kafka = [start_daemon(n) for n in sorted(DAEMONS) if "kafka" in DAEMONS[n]]
    without = [start_daemon(n) for n in sorted(DAEMONS) if "kafka" not in DAEMONS[n]]
    for d in with_kafka + without:
        d.wait_ready()
    stack.down("kafka")
    try:
        for d in with_kafka:
            def kafka_down(d=d):
                r = d.get("/readyz")
                return r.status_code == 503 and not r.json()["checks"]["kafka"]["ok"]
            wait_until(kafka_down, 60, what=f"{d.name} unready without Kafka")
            body = d.get("/readyz").json()
            assert body["status"] == "unready"
            # the Kafka connection and the consumer group both need the brokers; the
            # storage, database or NATS checks must not be dragged down with them
            assert all(c["ok"] for n, c in body["checks"].items()
                       if not n.startswith("kafka")), body
            assert d.get("/healthz").status_code == 200  # alive, just not ready
        for d in without:
            assert d.get("/readyz").status_code == 200, d.name
    finally:
        stack.up("kafka")
    for d in with_kafka:
        d.wait_ready(120)
        assert all(c["ok"] for c in d.get("/readyz").json()["checks"].values())


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signals_drain_and_exit_cleanly(start_daemon, sig):
    d = start_daemon("analytics-sink")
    d.wait_ready()
    assert d.stop(sig) == 0
    msgs = [e["msg"] for e in d.log_lines()]
    assert any(m.startswith(f"received {sig.name}: draining") for m in msgs)
    assert any(m.startswith("drained in") for m in msgs)
    assert msgs[-1] == "stopped"


def test_configuration_errors_name_the_key(stack, tmp_path):
    r = subprocess.run([str(BIN / "castbus-ingest")], capture_output=True, text=True, timeout=30,
                       env={"CASTBUS_HTTP_PORT": "eighty", "PATH": "/usr/bin:/bin"})
    assert r.returncode == 2
    err = json.loads(r.stderr.strip().splitlines()[-1])
    assert err["level"] == "error"
    assert "CASTBUS_HTTP_PORT: 'eighty' is not an integer" in err["msg"]
    r = subprocess.run([str(BIN / "castbus-sfu"), "--redis-url=http://x"], capture_output=True,
                       text=True, timeout=30, env={"PATH": "/usr/bin:/bin"})
    assert r.returncode == 2
    assert "CASTBUS_REDIS_URL" in r.stderr


@pytest.mark.parametrize("name", sorted(DAEMONS))
def test_help_and_version(name):
    r = subprocess.run([str(BIN / f"castbus-{name}"), "--help"], capture_output=True, text=True,
                       timeout=30)
    assert r.returncode == 0
    assert f"Usage: castbus-{name}" in r.stdout
    assert f"env CASTBUS_HTTP_PORT, default {DEFAULT_PORTS[name]}" in r.stdout
    assert f"CASTBUS_{name.upper().replace('-', '_')}_<NAME>" in r.stdout
    v = subprocess.run([str(BIN / f"castbus-{name}"), "--version"], capture_output=True, text=True,
                       timeout=30)
    assert v.returncode == 0
    assert v.stdout.startswith(f"castbus-{name} ")
