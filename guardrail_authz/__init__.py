"""guardrail-authz: runtime guardrails enforced at the access proxy through Envoy ext_authz."""

__version__ = "0.1.0"
