"""Postgres through libcommon: per-daemon schema and migrations applied once,
even when replicas start together."""

import subprocess

from conftest import unique


def psql(stack, sql):
    r = subprocess.run(["psql", stack.env["CASTBUS_PG_DSN"], "-Atc", sql], capture_output=True,
                       text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    return r.stdout.split()


def test_migrations_apply_once(stack, probes):
    schema = unique("itest").replace("-", "_")
    first = probes("pg-migrate", f"--schema={schema}")
    assert first.wait_exit() == 0
    (ev,) = [e for e in first.events if e["event"] == "migrated"]
    assert ev["version"] == 2
    second = probes("pg-migrate", f"--schema={schema}")
    assert second.wait_exit() == 0
    assert psql(stack, f"SELECT version FROM {schema}.schema_migrations ORDER BY 1") == ["1", "2"]
    assert psql(stack, f"SELECT count(*) FROM {schema}.widgets") == ["1"]


def test_replicas_migrating_at_once(stack, probes):
    schema = unique("itest").replace("-", "_")
    ps = [probes("pg-migrate", f"--schema={schema}") for _ in range(4)]
    assert [p.wait_exit() for p in ps] == [0, 0, 0, 0]
    assert psql(stack, f"SELECT version FROM {schema}.schema_migrations ORDER BY 1") == ["1", "2"]
