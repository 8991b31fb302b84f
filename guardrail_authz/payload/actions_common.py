"""What the action extractors share: their error type and stable de-duplication."""

from __future__ import annotations

from collections.abc import Iterable


class ActionError(Exception):
    """The request's action cannot be named; the caller answers 400 with `reason`."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


def unique(actions: Iterable[str]) -> tuple[str, ...]:
    """Actions in first-seen order, each once."""
    return tuple(dict.fromkeys(actions))
