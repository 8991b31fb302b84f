"""Frozen source model of a route's `mask:` section, as the policy file says it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # source.py imports this module for Route.mask; no import back at runtime
    from guardrail_authz.policy.source import Where


@dataclass(frozen=True, slots=True)
class ExemptSpec:
    """Callers who see values unmasked: principal globs or roles (any of them)."""

    principals: tuple[str, ...]
    roles: tuple[str, ...]
    where: Where


@dataclass(frozen=True, slots=True)
class FieldMaskSpec:
    """Mask the values a JSON path selects; `where` locates the path."""

    path: str
    style: str  # redact | partial | hash
    keep: int
    exempt: ExemptSpec | None
    where: Where


@dataclass(frozen=True, slots=True)
class DetectorMaskSpec:
    """Mask what a detector finds in string values: a built-in (`regex` None) or a custom
    regex named `detector`; `where` locates the regex (custom) or the item (built-in)."""

    detector: str
    regex: str | None
    style: str
    keep: int
    exempt: ExemptSpec | None
    where: Where


@dataclass(frozen=True, slots=True)
class HeaderMaskSpec:
    """Mask a request header on ext_authz's allow path; `where` locates its name."""

    name: str  # lower case
    style: str  # remove | redact | partial | hash
    keep: int
    exempt: ExemptSpec | None
    where: Where


@dataclass(frozen=True, slots=True)
class MaskSpec:
    """A route's `mask:` section."""

    response: bool
    request: bool
    fields: tuple[FieldMaskSpec, ...]
    detectors: tuple[DetectorMaskSpec, ...]
    exempt: ExemptSpec | None
    compressed: str  # decompress | skip
    max_bytes: int
    where: Where
    headers: tuple[HeaderMaskSpec, ...] = ()  # request headers, masked by ext_authz on allow
