-- Metrics of every request and stage run, shadow comparisons, and the rollout state.
-- Times are unix epoch milliseconds; durations and latencies microseconds; memory bytes.

CREATE TABLE requests (
  id             INTEGER PRIMARY KEY,
  time_ms        INTEGER NOT NULL,
  request_id     TEXT    NOT NULL,
  pipeline       TEXT    NOT NULL,
  rollout_id     INTEGER NOT NULL,          -- 0: no rollout was live
  arm            TEXT    NOT NULL,          -- 'stable' | 'candidate'
  bucket         INTEGER NOT NULL,          -- 0..9999, -1 without a rollout
  http_status    INTEGER NOT NULL,
  outcome        TEXT    NOT NULL,          -- 'ok' | 'partial' | 'error'
  latency_us     INTEGER NOT NULL,
  fell_back      INTEGER NOT NULL,          -- 0 | 1
  fallback_cause TEXT    NOT NULL DEFAULT '',
  error_class    TEXT    NOT NULL DEFAULT '',
  peak_bytes     INTEGER NOT NULL,
  rss_bytes      INTEGER NOT NULL,
  variants       TEXT    NOT NULL           -- JSON {"stage": "variant"} of the variants that answered
);
CREATE INDEX requests_by_pipeline_time ON requests (pipeline, time_ms);
CREATE INDEX requests_by_rollout ON requests (rollout_id, time_ms);

CREATE TABLE stage_runs (
  id             INTEGER PRIMARY KEY,
  request        INTEGER NOT NULL REFERENCES requests (id) ON DELETE CASCADE,
  stage          TEXT    NOT NULL,
  variant        TEXT    NOT NULL,
  plugin_version TEXT    NOT NULL,
  start_us       INTEGER NOT NULL,          -- since the request started
  duration_us    INTEGER NOT NULL,
  status         TEXT    NOT NULL,          -- 'ok' | 'failed' | 'skipped' | 'fell_back'
  attempts       INTEGER NOT NULL,
  error_class    TEXT    NOT NULL DEFAULT '',
  peak_bytes     INTEGER NOT NULL
);
CREATE INDEX stage_runs_by_request ON stage_runs (request);

CREATE TABLE shadow_results (
  id                   INTEGER PRIMARY KEY,
  time_ms              INTEGER NOT NULL,
  request_id           TEXT    NOT NULL,
  pipeline             TEXT    NOT NULL,
  rollout_id           INTEGER NOT NULL,
  candidate_ok         INTEGER NOT NULL,
  matched              INTEGER NOT NULL,
  first_difference     TEXT    NOT NULL DEFAULT '',
  stable_latency_us    INTEGER NOT NULL,
  candidate_latency_us INTEGER NOT NULL
);
CREATE INDEX shadow_by_rollout ON shadow_results (rollout_id, time_ms);

CREATE TABLE rollouts (
  id          INTEGER PRIMARY KEY,
  pipeline    TEXT    NOT NULL,
  variants    TEXT    NOT NULL,             -- JSON {"stage": "candidate variant"}
  percent_bp  INTEGER NOT NULL,             -- candidate share in basis points (5000 = 50 %)
  shadow_bp   INTEGER NOT NULL,
  status      TEXT    NOT NULL,             -- 'live' | 'paused' | 'rolled_back' | 'promoted' | 'completed'
  steps       TEXT    NOT NULL,             -- JSON [5, 25, 50, 100] or []
  step_index  INTEGER NOT NULL,
  dwell_ms    INTEGER NOT NULL,
  step_ms     INTEGER NOT NULL,             -- when the current step began
  created_ms  INTEGER NOT NULL,
  updated_ms  INTEGER NOT NULL,
  reason      TEXT    NOT NULL DEFAULT ''   -- why it is in its status
);
CREATE INDEX rollouts_by_pipeline ON rollouts (pipeline, id);

CREATE TABLE rollout_events (
  id         INTEGER PRIMARY KEY,
  rollout_id INTEGER NOT NULL,
  time_ms    INTEGER NOT NULL,
  actor      TEXT    NOT NULL,              -- operator name, 'guardrail', 'schedule', 'daemon'
  action     TEXT    NOT NULL,              -- 'start', 'set_percent', 'step', 'pause', 'resume', 'rollback', 'promote', 'complete'
  reason     TEXT    NOT NULL DEFAULT '',
  percent_bp INTEGER NOT NULL
);

-- Variants promoted to stable: they answer on both arms until changed.
CREATE TABLE stable_overrides (
  pipeline TEXT NOT NULL,
  stage    TEXT NOT NULL,
  variant  TEXT NOT NULL,
  PRIMARY KEY (pipeline, stage)
);

-- One row per daemon start; stopped_ms stays NULL when the daemon died without a clean stop.
CREATE TABLE daemon_runs (
  id         INTEGER PRIMARY KEY,
  started_ms INTEGER NOT NULL,
  stopped_ms INTEGER
);
