"""Model release: the policy, the holdout gate (more steps of issue #7 to come)."""
