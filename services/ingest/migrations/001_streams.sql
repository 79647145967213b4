-- The streams ingest accepts, their keys and their live state.
CREATE TABLE streams (
    id text PRIMARY KEY,
    name text NOT NULL,
    profile text NOT NULL DEFAULT 'default',
    dvr_window_s integer NOT NULL DEFAULT 3600 CHECK (dvr_window_s BETWEEN 0 AND 14400),
    record boolean NOT NULL DEFAULT false,
    signed_playback boolean NOT NULL DEFAULT false,
    priority text NOT NULL DEFAULT 'normal' CHECK (priority IN ('normal', 'high')),
    -- SHA-256 of the secret half of the stream key ("<id>.<secret>")
    key_hash bytea NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    -- written by the ingest instance that holds the publisher; stale after
    -- live_heartbeat + 3 stats periods (an instance that died cannot say idle)
    live_instance text,
    live_since timestamptz,
    live_heartbeat timestamptz,
    live_info jsonb
);
CREATE INDEX streams_created_at ON streams (created_at);
