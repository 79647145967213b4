-- Test migration for tests/integration (schema chosen by the test).
CREATE TABLE widgets (
    id text PRIMARY KEY,
    created_at timestamptz NOT NULL DEFAULT now()
);
