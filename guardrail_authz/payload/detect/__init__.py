"""Injection and abuse detectors: hyperscan signatures, libinjection and URL checks per value."""

from __future__ import annotations

from guardrail_authz.payload.detect.base import DETECTORS, Hit
from guardrail_authz.payload.detect.inspector import Inspector, inspector
from guardrail_authz.payload.detect.normalise import normalise

__all__ = ["DETECTORS", "Hit", "Inspector", "inspector", "normalise"]
