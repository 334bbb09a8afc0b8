-- The candidate's own outcome, what a paused rollout's share was, and why each decision was made.

-- "<stage>: <class>" when an attempt of the arm's own variants failed, timed out, crashed or was
-- abandoned, even if a fallback rescued the user's answer; '' when none did.
ALTER TABLE requests ADD COLUMN own_failure TEXT NOT NULL DEFAULT '';
-- A rollout paused after a crash serves 0 %; resume restores this share.
ALTER TABLE rollouts ADD COLUMN paused_percent_bp INTEGER NOT NULL DEFAULT 0;
-- JSON of the guardrail verdict behind the event: n per arm, each check's estimate, interval,
-- threshold, alpha and result.
ALTER TABLE rollout_events ADD COLUMN details TEXT NOT NULL DEFAULT '';
