"""Safe rollout: policy bundles, policy tests, replay of audit logs, snapshot history."""
