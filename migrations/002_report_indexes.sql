-- The report and the guardrails read requests per pipeline and arm over a time window.
CREATE INDEX requests_by_arm ON requests (pipeline, arm, time_ms);
CREATE INDEX stage_runs_by_stage ON stage_runs (stage, variant);
