"""Load-time policy errors: stable codes, file and line, collected and sorted."""

from __future__ import annotations

from dataclasses import dataclass, field

MAX_ERRORS = 100


@dataclass(frozen=True, slots=True, order=True)
class PolicyError:
    """One mistake in a policy file, located by file, line and field path."""

    file: str
    line: int
    field: str
    code: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        at = f" {self.field}:" if self.field else ""
        return f"{where}:{at} {self.message} [{self.code}]"


@dataclass(slots=True)
class ErrorSink:
    """Collects PolicyErrors during one load; capped so a broken tree stays readable."""

    errors: list[PolicyError] = field(default_factory=list)
    dropped: int = 0

    def add(self, code: str, message: str, file: str, line: int = 0, field: str = "") -> None:
        """Record an error (counted but not kept beyond MAX_ERRORS)."""
        if len(self.errors) >= MAX_ERRORS:
            self.dropped += 1
            return
        self.errors.append(PolicyError(file, line, field, code, message))

    def __bool__(self) -> bool:
        return bool(self.errors)

    def sorted(self) -> list[PolicyError]:
        """Errors ordered by file, line and field."""
        return sorted(self.errors)


class PolicyLoadError(Exception):
    """Raised when a policy directory does not compile; carries every error found."""

    def __init__(self, errors: list[PolicyError], dropped: int = 0) -> None:
        self.errors = errors
        self.dropped = dropped
        super().__init__(self.render())

    def render(self) -> str:
        """All errors, one per line, in a stable order."""
        lines = [str(e) for e in self.errors]
        if self.dropped:
            lines.append(f"... and {self.dropped} more errors")
        return "\n".join(lines)
