"""The names policy files use: their API version, document names and header names."""

from __future__ import annotations

import re

API_VERSION = "guardrail-authz/v1"
# metadata.name of policies, key sets, test files and bundles: lower-case, digits, '-._'.
NAME = re.compile(r"^[a-z0-9]([a-z0-9._-]{0,61}[a-z0-9])?$")
# A lower-case HTTP header name (an RFC 9110 token in lower case).
HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9a-z-]+$")
