"""Who the request authenticated as, and what evaluation learnt about it on the way."""

from __future__ import annotations

from guardrail_authz.engine.decision import WouldDeny


class Caller:
    """The caller of one request, filled in as evaluation goes (identity, payload actions,
    would-denies of monitor-mode guardrails, the decision trace when one is asked for)."""

    __slots__ = (
        "actions",
        "by_rule",
        "claims",
        "credential",
        "key",
        "monitored",
        "payload_seconds",
        "principal",
        "reasoned",
        "roles",
        "roles_header",
        "ruled",
        "source",
        "trace",
    )

    def __init__(
        self,
        principal: str | None,
        roles: frozenset[str],
        roles_header: str,
        source: str | None,
        trace: list[str] | None = None,
    ) -> None:
        self.principal = principal
        self.roles = roles
        self.roles_header = roles_header
        self.source = source
        self.key: str | None = None  # the API key presented, when one authenticated the call
        self.claims: dict[str, object] | None = None  # the verified JWT's claims, if any
        self.actions: tuple[str, ...] = ()  # what the payload does, when the route extracts it
        self.credential: str | None = None  # "api_key" | "jwt" | "mtls": what authenticated
        self.monitored: list[WouldDeny] = []  # denials found in monitor mode, not enforced
        self.reasoned = 0  # how many of `monitored` are already named in the reasons
        self.by_rule = False  # the denial came from a deny rule in its own (enforced) mode
        self.ruled = False  # the rules ran (not refused before them)
        self.payload_seconds = 0.0  # time spent on the payload guardrails
        self.trace = trace  # lines explaining the decision, when asked for
