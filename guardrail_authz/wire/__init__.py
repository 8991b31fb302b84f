"""Envoy's wire API as our own minimal protos, compiled into guardrail_authz.wire.envoy."""
