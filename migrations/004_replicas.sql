-- Replicas sharing one database (metrics.database: postgresql://...): who serves, who decides,
-- and up to when each one's request rows are all written.
CREATE TABLE replicas (
  id                TEXT    PRIMARY KEY,      -- replica.id (default: host name and frontend port)
  host              TEXT    NOT NULL,
  pid               INTEGER NOT NULL,
  started_ms        INTEGER NOT NULL,
  seen_ms           INTEGER NOT NULL,         -- its last heartbeat
  plugin_generation INTEGER NOT NULL,
  deciding          INTEGER NOT NULL,         -- 1: holds the lease: judges guardrails and takes steps
  complete_ms       INTEGER NOT NULL          -- every request it started before this time is written
);
-- Which replica a daemon run was: an unclean stop pauses the rollouts once, for that replica's restart.
ALTER TABLE daemon_runs ADD COLUMN replica TEXT NOT NULL DEFAULT '';
