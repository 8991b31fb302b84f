"""guardrail-authz tests."""
