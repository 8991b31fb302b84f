"""Parse `kind: GuardrailTest` documents into frozen cases, reporting every mistake at once."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from guardrail_authz.policy.compile import TEST_KIND, is_test_document, policy_files
from guardrail_authz.policy.errors import ErrorSink
from guardrail_authz.policy.names import HEADER_NAME as _HEADER
from guardrail_authz.policy.parse import check_api_version, document_name
from guardrail_authz.policy.reader import Reader
from guardrail_authz.policy.yamlsrc import line_of, load_documents, read_text

KIND = TEST_KIND
OUTCOMES = ("allow", "deny")
CREDENTIALS = ("api_key", "jwt", "mtls")
# What offline evaluation never decides: rate limits are not counted without a server.
_OFFLINE_STATUS = {429: "rate limits are not applied when tests run offline"}
_OFFLINE_REASONS = {
    "rate_limited": "rate limits are not applied when tests run offline",
    "rate_limit_unavailable": "no rate-limit store is asked when tests run offline",
}
_REQUEST_FIELDS = (
    "method", "path", "host", "headers", "body", "json", "destinationPort",
    "sourcePrincipal", "sourceAddress",
)  # fmt: skip
_EXPECT_FIELDS = (
    "outcome", "status", "reason", "reasons", "route", "action", "rule", "principal",
    "credential", "headers", "removedHeaders", "responseHeaders", "query", "enforced",
    "wouldDeny", "actions",
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class CaseRequest:
    """The request a case sends, in the shape `RequestView.from_json` reads."""

    method: str
    path: str
    host: str = ""
    headers: tuple[tuple[str, str], ...] = ()
    body: str = ""
    destination_port: int = 0
    source_principal: str = ""
    source_address: str = ""

    def to_json(self) -> dict[str, Any]:
        """The offline-evaluation JSON object of this request."""
        return {
            "method": self.method,
            "path": self.path,
            "host": self.host,
            "headers": dict(self.headers),
            "body": self.body,
            "destination_port": self.destination_port,
            "source_principal": self.source_principal,
            "source_address": self.source_address,
        }


@dataclass(frozen=True, slots=True)
class Expectation:
    """What a case expects; only the fields named in `given` are checked."""

    given: frozenset[str]
    outcome: str = "allow"
    status: int | None = None
    reason: str | None = None
    reasons: tuple[str, ...] = ()
    route: str | None = None
    action: str | None = None
    rule: str | None = None
    principal: str | None = None  # route, action, rule, principal, credential given as
    credential: str | None = None  # null: the decision must have none (api_key, jwt, mtls)
    headers: tuple[tuple[str, str | None], ...] = ()  # value None: must not be set
    removed_headers: tuple[str, ...] = ()
    response_headers: tuple[tuple[str, str | None], ...] = ()
    query_set: tuple[tuple[str, str], ...] = ()
    query_removed: tuple[str, ...] = ()
    enforced: bool | None = None
    would_deny: str | None = None
    actions: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class GuardrailCase:
    """One named request and the decision expected for it."""

    name: str
    file: str
    line: int
    request: CaseRequest
    expect: Expectation


@dataclass(frozen=True, slots=True)
class CaseSuite:
    """One GuardrailTest document: a name and its cases."""

    name: str
    file: str
    line: int
    cases: tuple[GuardrailCase, ...]


def discover(
    directory: Path, extra: list[Path], sink: ErrorSink, *, label: str | None = None
) -> list[CaseSuite]:
    """Test documents of a policy directory's files plus those of `--tests` paths
    (`label`: how to name the directory in errors, e.g. the bundle it was extracted from)."""
    suites: list[CaseSuite] = []
    if directory.is_dir():
        for path in policy_files(directory):
            # Syntax errors here are also the policy loader's, reported once by the caller.
            suites += read_file(path, path.name, sink, only_tests=False)
    for path in extra:
        if path.is_dir():
            for found in policy_files(path):
                suites += read_file(found, str(found), sink, only_tests=False)
        elif path.is_file():
            suites += read_file(path, str(path), sink, only_tests=True)
        else:
            sink.add("tests.missing", "test path does not exist", str(path))
    if not suites and not sink and directory.is_dir():  # a missing directory: the loader says
        name = label or str(directory)
        where = ", ".join([name, *map(str, extra)])
        sink.add("tests.none", f"no GuardrailTest document found in {where}", name)
    return suites


def read_file(path: Path, display: str, sink: ErrorSink, *, only_tests: bool) -> list[CaseSuite]:
    """The GuardrailTest documents of one file; with `only_tests`, any other kind is an error."""
    text = read_text(path, display, sink)
    if text is None:
        return []
    return parse_text(text, display, sink, only_tests=only_tests)


def parse_text(text: str, file: str, sink: ErrorSink, *, only_tests: bool) -> list[CaseSuite]:
    """Parse the GuardrailTest documents of a YAML text."""
    scratch = ErrorSink()
    docs = load_documents(text, file, scratch)
    if only_tests or any(is_test_document(doc) for doc, _ in docs):
        for e in scratch.errors:
            sink.add(e.code, e.message, e.file, e.line, e.field)
    suites: list[CaseSuite] = []
    for doc, line in docs:
        if is_test_document(doc):
            suite = parse_suite(doc, file, line, sink)
            if suite is not None:
                suites.append(suite)
        elif only_tests:
            kind = doc.get("kind") if isinstance(doc, dict) else None
            msg = f"expected a {KIND} document, got kind {kind!r}"
            sink.add("test.kind", msg, file, getattr(doc, "line", line), "kind")
    return suites


def parse_suite(doc: Any, file: str, line: int, sink: ErrorSink) -> CaseSuite | None:
    """One GuardrailTest document (None when it is not even a mapping)."""
    r = Reader(doc, "", file, sink, line)
    if not r.ok:
        return None
    r.only("apiVersion", "kind", "metadata", "spec")
    check_api_version(r)
    name = ""
    meta = r.mapping("metadata", required=True)
    if meta is not None:
        meta.only("name", "labels", "annotations", "description")
        name = document_name(meta)
    spec = r.mapping("spec", required=True)
    if spec is None:
        return CaseSuite(name, file, r.line, ())
    spec.only("cases")
    cases: list[GuardrailCase] = []
    seen: dict[str, int] = {}
    for item, path, ln in spec.items("cases", required=True):
        case = _case(spec.sub(item, path, ln))
        key = item.get("name") if isinstance(item, dict) else None
        if isinstance(key, str) and key in seen:  # also when either case has other errors
            msg = f"case {key!r} already defined at {file}:{seen[key]}"
            sink.add("case.duplicate", msg, file, line_of(item, "name"), f"{path}.name")
            continue
        if isinstance(key, str):
            seen[key] = getattr(item, "line", ln)
        if case is not None:
            cases.append(case)
    return CaseSuite(name, file, r.line, tuple(cases))


def _case(r: Reader) -> GuardrailCase | None:
    if not r.ok:
        return None
    r.only("name", "description", "request", "expect")
    name = r.text("name", required=True)
    req = r.mapping("request", required=True)
    exp = r.mapping("expect", required=True)
    request = _request(req) if req is not None else None
    expect = _expect(exp) if exp is not None else None
    if name is None or request is None or expect is None:
        return None
    return GuardrailCase(name, r.file, r.line, request, expect)


def _request(r: Reader) -> CaseRequest | None:
    r.only(*_REQUEST_FIELDS)
    method = r.text("method", required=True) or ""
    path = r.text("path", required=True) or ""
    if path and not path.startswith("/"):
        r.error("path", "request.path", "must start with '/'")
    headers = {
        k: v for k, v in _text_map(r, "headers", nullable=False, lower=True) if v is not None
    }
    body = r.data.get("body", "")
    if not isinstance(body, str):
        r.error("body", "field.type", "must be a string (give structured bodies as json)")
        body = ""
    if "json" in r.data:
        if "body" in r.data:
            r.error("json", "request.body", "give either body or json, not both")
        body = json.dumps(r.data["json"], separators=(",", ":"))
        headers.setdefault("content-type", "application/json")
    port = r.integer("destinationPort", lo=1, hi=65535) or 0
    if not (method and path):
        return None
    return CaseRequest(
        method,
        path,
        r.text("host") or "",
        tuple(headers.items()),
        body,
        port,
        r.text("sourcePrincipal") or "",
        r.text("sourceAddress") or "",
    )


def _expect(r: Reader) -> Expectation:
    r.only(*_EXPECT_FIELDS)
    outcome = r.text("outcome", required=True)
    if outcome is not None and outcome not in OUTCOMES:
        r.error("outcome", "expect.outcome", f"must be allow or deny, got {outcome!r}")
    status = r.integer("status", lo=100, hi=599)
    reason = r.text("reason")
    _offline(r, status, reason)
    query = r.mapping("query")
    query_set: tuple[tuple[str, str], ...] = ()
    query_removed: tuple[str, ...] = ()
    if query is not None:
        query.only("set", "removed")
        query_set = tuple(
            (k, v) for k, v in _text_map(query, "set", nullable=False) if v is not None
        )
        query_removed = query.text_list("removed")
    return Expectation(
        frozenset(r.data),
        outcome or "allow",
        status,
        reason,
        r.text_list("reasons"),
        _maybe(r, "route"),
        _maybe(r, "action"),
        _maybe(r, "rule"),
        _maybe(r, "principal"),
        _credential(r),
        _text_map(r, "headers", nullable=True, lower=True),
        _names(r, "removedHeaders"),
        _text_map(r, "responseHeaders", nullable=True, lower=True),
        query_set,
        query_removed,
        r.flag("enforced"),
        r.text("wouldDeny"),
        r.text_list("actions"),
    )


def _maybe(r: Reader, key: str) -> str | None:
    """A string field that may be given as null (expected: none)."""
    return None if r.data.get(key) is None else r.text(key)


def _credential(r: Reader) -> str | None:
    value = _maybe(r, "credential")
    if value is not None and value not in CREDENTIALS:
        known = ", ".join(CREDENTIALS)
        r.error("credential", "field.choice", f"must be one of {known} or null, got {value!r}")
    return value


def _offline(r: Reader, status: int | None, reason: str | None) -> None:
    """Refuse expectations only a running server can meet, instead of failing them later."""
    why = _OFFLINE_STATUS.get(status or 0)
    if why is not None:
        msg = f"a {status} cannot be expected: {why}; test rate limits against a running server"
        r.error("status", "expect.offline", msg)
    why = _OFFLINE_REASONS.get(reason or "")
    if why is not None:
        msg = f"reason {reason!r} cannot be expected: {why}"
        r.error("reason", "expect.offline", msg)


def _names(r: Reader, key: str) -> tuple[str, ...]:
    """A list of header names, lower-cased."""
    out: list[str] = []
    for item, path, line in r.items(key):
        if isinstance(item, str) and _HEADER.match(item.lower()):
            out.append(item.lower())
        else:
            r.sink.add("field.header", f"{item!r} is not a header name", r.file, line, path)
    return tuple(out)


def _text_map(
    r: Reader, key: str, *, nullable: bool, lower: bool = False
) -> tuple[tuple[str, str | None], ...]:
    """A mapping of names to strings (or null, when `nullable`); header names lower-cased."""
    m = r.mapping(key)
    if m is None:
        return ()
    out: list[tuple[str, str | None]] = []
    for name, value in m.data.items():
        if value is None and nullable:
            out.append((name.lower() if lower else name, None))
            continue
        if not isinstance(value, str):
            null = " or null" if nullable else ""
            got = "null" if value is None else type(value).__name__
            m.error(name, "field.type", f"must be a string{null}, got {got} (quote it)")
            continue
        if lower and not _HEADER.match(name.lower()):
            m.error(name, "field.header", f"{name!r} is not a header name")
            continue
        out.append((name.lower() if lower else name, value))
    return tuple(out)
