"""Injection and abuse detectors: hyperscan signatures, libinjection and URL checks per value.

How a scan works (inspector.py): all values are joined by NUL and scanned once by the
detector set's hyperscan database (matcher.py). A match is either a finding or a trigger:
decode the value (normalise.py) and scan its variants in a second pass, ask libinjection,
parse it as a URL (ssrf.py), resolve Log4j lookups or inflate base64 (confirm.py). Plain
values cost no Python work of their own. The signature tables are rules_web.py (sqli, xss),
rules_os.py (cmdi, traversal), rules_code.py (ssti, log4shell, deserialization) and
rules_protocol.py (crlf, nosql, ssrf triggers, decoding triggers).
"""

from __future__ import annotations

from guardrail_authz.payload.detect.base import DETECTORS, Hit
from guardrail_authz.payload.detect.inspector import Inspector, inspector
from guardrail_authz.payload.detect.normalise import normalise

__all__ = ["DETECTORS", "Hit", "Inspector", "inspector", "normalise"]
