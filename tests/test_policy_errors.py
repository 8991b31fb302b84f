"""Invalid policy fixtures: each mistake is reported with its stable code, file, line and field."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import pytest

from guardrail_authz.policy.compile import load_directory
from guardrail_authz.policy.errors import MAX_ERRORS, ErrorSink, PolicyError, PolicyLoadError

# (line, field, code) of an error; the file is checked separately where it matters.
Found = tuple[int, str, str]

HEADER = """\
apiVersion: guardrail-authz/v1
kind: GuardrailPolicy
metadata:
  name: p
spec:
"""

# A valid policy: HEADER (lines 1-5) then the routes (lines 6-12).
VALID = (
    HEADER
    + """\
  routes:
    - name: r
      match:
        paths: [/x]
      rules:
        - name: ok
          effect: allow
"""
)
R0 = "spec.routes[0]"
RULE0 = f"{R0}.rules[0]"
KEY_SET = "apiVersion: guardrail-authz/v1\nkind: ApiKeySet\nmetadata: {name: k}\nspec: {}\n"


def _spec(lines: str) -> str:
    """VALID with lines added at the top of spec (they start on line 6)."""
    return VALID.replace("spec:\n", "spec:\n" + lines)


def _meta(lines: str) -> str:
    """VALID with lines added to metadata after the name (they start on line 5)."""
    return VALID.replace("  name: p\n", "  name: p\n" + lines)


def _in_route(lines: str) -> str:
    """VALID with lines added to the route after its name (they start on line 8)."""
    return VALID.replace("    - name: r\n", "    - name: r\n" + lines)


def _in_match(lines: str) -> str:
    """VALID with lines added to the match block after paths (they start on line 10)."""
    return VALID.replace("        paths: [/x]\n", "        paths: [/x]\n" + lines)


def _in_rule(lines: str) -> str:
    """VALID with lines added to the rule (they start on line 13)."""
    return VALID + lines


def _write(directory: Path, files: dict[str, str | bytes]) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    for name, content in files.items():
        path = directory / name
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(textwrap.dedent(content), encoding="utf-8")


def _load_error(directory: Path) -> PolicyLoadError:
    with pytest.raises(PolicyLoadError) as info:
        load_directory(directory)
    return info.value


def _errors(tmp_path: Path, files: dict[str, str | bytes]) -> list[PolicyError]:
    _write(tmp_path, files)
    return _load_error(tmp_path).errors


def _found(tmp_path: Path, text: str) -> set[Found]:
    """Load one file policy.yaml; every error as (line, field, code), all in that file."""
    errors = _errors(tmp_path, {"policy.yaml": text})
    assert {e.file for e in errors} == {"policy.yaml"}
    return {(e.line, e.field, e.code) for e in errors}


def _one(tmp_path: Path, text: str) -> PolicyError:
    errors = _errors(tmp_path, {"policy.yaml": text})
    assert len(errors) == 1, errors
    return errors[0]


def test_valid_fixture_loads(tmp_path: Path) -> None:
    """The base fixture every other test breaks is itself valid."""
    _write(tmp_path, {"policy.yaml": VALID})
    snapshot = load_directory(tmp_path)
    assert snapshot.policies == (("p", "0"),)
    assert snapshot.route_count == 1


# --- YAML --------------------------------------------------------------------------------------


def test_malformed_yaml(tmp_path: Path) -> None:
    """A YAML syntax error names the line where the parser gave up."""
    err = _one(tmp_path, "apiVersion: guardrail-authz/v1\nkind: [GuardrailPolicy\nspec: {}\n")
    assert (err.file, err.line, err.field, err.code) == ("policy.yaml", 3, "", "yaml.syntax")
    assert err.message.startswith("invalid YAML: ")


def test_bad_indentation(tmp_path: Path) -> None:
    """A mapping value where none is allowed is a syntax error on its line."""
    err = _one(tmp_path, "apiVersion: guardrail-authz/v1\n kind: GuardrailPolicy\nx: 1\n")
    assert (err.line, err.code) == (2, "yaml.syntax")


def test_python_tags_are_refused(tmp_path: Path) -> None:
    """The safe loader refuses arbitrary object tags instead of constructing them."""
    err = _one(tmp_path, VALID + "x: !!python/object:os.system {}\n")
    assert (err.line, err.code) == (13, "yaml.syntax")


def test_duplicate_key(tmp_path: Path) -> None:
    """A key given twice in one mapping is an error at the second occurrence."""
    text = VALID.replace("  name: p\n", "  name: p\n  name: q\n")
    assert _found(tmp_path, text) == {(5, "name", "yaml.duplicate_key")}


def test_non_string_key(tmp_path: Path) -> None:
    """YAML 1.1 reads `on:` as a boolean key, which is refused."""
    assert _found(tmp_path, VALID + "on: true\n") >= {(13, "", "yaml.key")}


def test_document_that_is_not_a_mapping(tmp_path: Path) -> None:
    """A document that is a list is reported at its first line."""
    assert _found(tmp_path, VALID + "---\n- a\n- b\n") == {(14, "", "field.type")}


def test_multi_document_file_lines_are_file_lines(tmp_path: Path) -> None:
    """Lines count from the top of the file, across documents."""
    second = VALID.replace("name: p\n", "name: q\n").replace("paths: [/x]", "paths: [/y]")
    text = VALID + "---\n" + second.replace("kind: GuardrailPolicy", "kind: Nope")
    assert _found(tmp_path, text) == {(15, "kind", "doc.kind")}


# --- unknown fields ------------------------------------------------------------------------------

UNKNOWN_FIELDS = [
    ("top-level", VALID + "extra: 1\n", 13, "extra"),
    ("metadata", _meta("  owner: me\n"), 5, "metadata.owner"),
    ("spec", _spec("  timeout: 3\n"), 6, "spec.timeout"),
    ("route", _in_route("      weight: 1\n"), 8, f"{R0}.weight"),
    ("match", _in_match("        path: /y\n"), 10, f"{R0}.match.path"),
    ("rule", _in_rule("          unless: {}\n"), 13, f"{RULE0}.unless"),
    ("when", _in_rule("          when:\n            groups: [a]\n"), 14, f"{RULE0}.when.groups"),
]


@pytest.mark.parametrize(
    ("text", "line", "field"),
    [pytest.param(t, ln, f, id=i) for i, t, ln, f in UNKNOWN_FIELDS],
)
def test_unknown_field(tmp_path: Path, text: str, line: int, field: str) -> None:
    """Every level of the document rejects fields it does not know, naming the allowed ones."""
    err = _one(tmp_path, text)
    assert (err.line, err.field, err.code) == (line, field, "field.unknown")
    assert "(known: " in err.message


def test_unknown_field_in_condition(tmp_path: Path) -> None:
    """A misspelt operator is unknown, and the condition then lacks its one operator."""
    text = VALID + (
        "          when:\n"
        "            headers:\n"
        "              - name: x-a\n"
        "                contains: b\n"
    )
    field = "spec.routes[0].rules[0].when.headers[0]"
    assert _found(tmp_path, text) == {
        (16, f"{field}.contains", "field.unknown"),
        (15, field, "condition.op"),
    }


def test_unknown_field_in_api_keys_and_on_allow(tmp_path: Path) -> None:
    """apiKeys, key entries and onAllow blocks are closed too."""
    text = VALID.replace(
        "spec:\n",
        "spec:\n  apiKeys:\n    header: x-key\n    keys:\n      - {sha256: " + "a" * 64 + ", "
        "principal: p, role: x}\n",
    ) + ("      onAllow:\n        requestHeaders:\n          add: []\n        stripKeys: true\n")
    assert _found(tmp_path, text) == {
        (7, "spec.apiKeys.header", "field.unknown"),
        (9, "spec.apiKeys.keys[0].role", "field.unknown"),
        (19, "spec.routes[0].onAllow.requestHeaders.add", "field.unknown"),
        (20, "spec.routes[0].onAllow.stripKeys", "field.unknown"),
    }


# --- document header -----------------------------------------------------------------------------


def test_wrong_api_version(tmp_path: Path) -> None:
    """Only guardrail-authz/v1 is understood."""
    err = _one(tmp_path, VALID.replace("guardrail-authz/v1", "guardrail-authz/v2"))
    assert (err.line, err.field, err.code) == (1, "apiVersion", "doc.api_version")


def test_unknown_kind(tmp_path: Path) -> None:
    """An unknown kind stops the document (its spec cannot be read)."""
    err = _one(tmp_path, VALID.replace("kind: GuardrailPolicy", "kind: Policy"))
    assert (err.line, err.field, err.code) == (2, "kind", "doc.kind")
    assert "GuardrailPolicy, ApiKeySet" in err.message


@pytest.mark.parametrize("name", ["Orders", "orders-", "-orders", "a" * 64, "órders", "orders v2"])
def test_invalid_policy_name(tmp_path: Path, name: str) -> None:
    """Names are lowercase DNS-like labels of up to 63 characters."""
    err = _one(tmp_path, VALID.replace("  name: p\n", f"  name: {name}\n"))
    assert (err.line, err.field, err.code) == (4, "metadata.name", "doc.name")


MISSING_REQUIRED = [
    ("apiVersion", VALID.replace("apiVersion: guardrail-authz/v1\n", ""), 1, "", "apiVersion"),
    ("kind", VALID.replace("kind: GuardrailPolicy\n", ""), 1, "", "kind"),
    ("metadata-name", VALID.replace("  name: p\n", "  version: '1'\n"), 4, "metadata", "name"),
    ("spec-routes", HEADER + "  hosts: ['*']\n", 6, "spec", "routes"),
    ("route-name", VALID.replace("    - name: r\n", "    - action: r\n"), 7, R0, "name"),
    ("route-match", VALID.replace("      match:\n        paths: [/x]\n", ""), 7, R0, "match"),
    ("route-rules", VALID.split("      rules:")[0], 7, R0, "rules"),
    ("rule-name", VALID.replace("- name: ok\n          effect", "- effect"), 11, RULE0, "name"),
    ("rule-effect", VALID.replace("          effect: allow\n", ""), 11, RULE0, "effect"),
]


@pytest.mark.parametrize(
    ("text", "line", "field", "what"),
    [pytest.param(t, ln, f, w, id=i) for i, t, ln, f, w in MISSING_REQUIRED],
)
def test_missing_required_field(
    tmp_path: Path, text: str, line: int, field: str, what: str
) -> None:
    """A missing required field is reported on the mapping that should hold it."""
    err = _one(tmp_path, text)
    assert (err.line, err.field, err.code) == (line, field, "field.required")
    full = f"{field}.{what}" if field else what
    assert f"'{full}'" in err.message or f"'{what}' (allow or deny)" in err.message


def test_missing_metadata_and_spec(tmp_path: Path) -> None:
    """Without metadata and spec both are reported on the document."""
    text = "apiVersion: guardrail-authz/v1\nkind: GuardrailPolicy\n"
    errors = _errors(tmp_path, {"policy.yaml": text})
    assert [(e.line, e.field, e.code) for e in errors] == [
        (1, "", "field.required"),
        (1, "", "field.required"),
    ]
    assert sorted(e.message for e in errors) == [
        "missing required field 'metadata'",
        "missing required field 'spec'",
    ]


def test_missing_condition_and_key_fields(tmp_path: Path) -> None:
    """Conditions need a name, keys need a hash and a principal, header sets a value."""
    text = _spec("  apiKeys:\n    keys:\n      - roles: [a]\n") + (
        "          when:\n"
        "            query:\n"
        "              - equals: x\n"
        "      onAllow:\n"
        "        requestHeaders:\n"
        "          set:\n"
        "            - name: x-a\n"
    )
    assert _found(tmp_path, text) == {
        (8, "spec.apiKeys.keys[0]", "field.required"),  # sha256 and principal: one line each
        (18, "spec.routes[0].rules[0].when.query[0]", "field.required"),
        (22, "spec.routes[0].onAllow.requestHeaders.set[0]", "field.required"),
    }
    messages = {e.message for e in _load_error(tmp_path).errors}
    assert "missing required field 'spec.apiKeys.keys[0].sha256'" in messages
    assert "missing required field 'spec.apiKeys.keys[0].principal'" in messages


# --- wrong types and values ----------------------------------------------------------------------

WRONG_TYPES = [
    ("hosts-string", _spec("  hosts: example.com\n"), 6, "spec.hosts"),
    ("routes-mapping", HEADER + "  routes: {name: r}\n", 6, "spec.routes"),
    ("rule-not-mapping", VALID.split("        - name: ok")[0] + "        - allow\n", 11, RULE0),
    ("name-number", VALID.replace("    - name: r\n", "    - name: 5\n"), 7, f"{R0}.name"),
    ("version-float", _meta("  version: 1.5\n"), 5, "metadata.version"),
    (
        "authenticated",
        _in_rule("          when: {authenticated: 'yes'}\n"),
        13,
        f"{RULE0}.when.authenticated",
    ),
    ("status-string", _in_rule("          status: '403'\n"), 13, f"{RULE0}.status"),
    (
        "strip-string",
        _spec("  apiKeys: {stripFromUpstream: 'no'}\n"),
        6,
        "spec.apiKeys.stripFromUpstream",
    ),
    (
        "principals-item",
        _in_rule("          when: {principals: [a, 7]}\n"),
        13,
        f"{RULE0}.when.principals[1]",
    ),
    ("empty-item", _in_rule("          when: {roles: ['']}\n"), 13, f"{RULE0}.when.roles[0]"),
    ("when-list", _in_rule("          when: [a]\n"), 13, f"{RULE0}.when"),
    (
        "key-set-not-name",
        _spec("  apiKeys: {keySets: [{name: x}]}\n"),
        6,
        "spec.apiKeys.keySets[0]",
    ),
    ("boolean-for-string", _in_route("      action: true\n"), 8, f"{R0}.action"),
]


@pytest.mark.parametrize(
    ("text", "line", "field"),
    [pytest.param(t, ln, f, id=i) for i, t, ln, f in WRONG_TYPES],
)
def test_wrong_type(tmp_path: Path, text: str, line: int, field: str) -> None:
    """A value of the wrong type is field.type at its own line; nothing is coerced."""
    err = _one(tmp_path, text)
    assert (err.line, err.field, err.code) == (line, field, "field.type")


def test_empty_values(tmp_path: Path) -> None:
    """Empty strings and empty required lists are field.empty."""
    text = HEADER + "  routes: []\n"
    assert _found(tmp_path, text) == {(6, "spec.routes", "field.empty")}
    text = VALID.replace("    - name: r\n", "    - name: ' '\n")
    assert _found(tmp_path / "b", text) == {(7, "spec.routes[0].name", "field.empty")}


def test_empty_rules(tmp_path: Path) -> None:
    """A route needs at least one rule."""
    text = VALID.split("      rules:")[0] + "      rules: []\n"
    assert _found(tmp_path, text) == {(10, "spec.routes[0].rules", "field.empty")}


SET_REPLACE = "      onAllow: {requestHeaders: {set: [{name: x-a, value: b, mode: replace}]}}\n"
CHOICES = [
    ("fail-mode", _spec("  failMode: maybe\n"), 6, "spec.failMode"),
    ("effect", VALID.replace("effect: allow", "effect: permit"), 12, f"{RULE0}.effect"),
    ("header-mode", VALID + SET_REPLACE, 13, f"{R0}.onAllow.requestHeaders.set[0].mode"),
]


@pytest.mark.parametrize(
    ("text", "line", "field"),
    [pytest.param(t, ln, f, id=i) for i, t, ln, f in CHOICES],
)
def test_invalid_choice(tmp_path: Path, text: str, line: int, field: str) -> None:
    """Enumerated fields list their allowed values."""
    err = _one(tmp_path, text)
    assert (err.line, err.field, err.code) == (line, field, "field.choice")
    assert "must be one of" in err.message


def test_status_out_of_range(tmp_path: Path) -> None:
    """A deny status must be an HTTP status between 200 and 599."""
    text = VALID.replace("effect: allow", "effect: deny\n          status: 600")
    err = _one(tmp_path, text)
    assert (err.line, err.field, err.code) == (13, "spec.routes[0].rules[0].status", "field.range")


def test_status_on_allow_rule(tmp_path: Path) -> None:
    """Only deny rules take a status."""
    err = _one(tmp_path, VALID + "          status: 404\n")
    assert (err.line, err.field, err.code) == (
        13,
        "spec.routes[0].rules[0].status",
        "rule.deny_only",
    )


ITEM = "              - name: x-a\n"
CONDITION_OPS = [
    ("no-operator", ITEM, 15, ""),
    ("two-operators", "              - {name: x-a, equals: b, prefix: c}\n", 15, ""),
    ("present-false", ITEM + "                present: false\n", 16, ".present"),
    ("absent-string", ITEM + "                absent: 'yes'\n", 16, ".absent"),
]


@pytest.mark.parametrize(
    ("item", "line", "suffix"),
    [pytest.param(it, ln, s, id=i) for i, it, ln, s in CONDITION_OPS],
)
def test_condition_operator(tmp_path: Path, item: str, line: int, suffix: str) -> None:
    """A condition takes exactly one operator; present/absent only take true."""
    text = VALID + "          when:\n            headers:\n" + item
    field = "spec.routes[0].rules[0].when.headers[0]" + suffix
    assert (line, field, "condition.op") in _found(tmp_path, text)


def test_invalid_regex(tmp_path: Path) -> None:
    """A regex that does not compile is reported at its line with Python's reason."""
    text = VALID + '          when:\n            query:\n              - {name: q, regex: "a(b"}\n'
    err = _one(tmp_path, text)
    field = "spec.routes[0].rules[0].when.query[0].regex"
    assert (err.line, err.field, err.code) == (15, field, "condition.regex")
    assert "missing )" in err.message


INVALID_HEADER_NAMES = [
    (
        "condition",
        _in_rule("          when: {headers: [{name: 'x a', present: true}]}\n"),
        13,
        f"{RULE0}.when.headers[0].name",
    ),
    (
        "set",
        VALID + "      onAllow: {requestHeaders: {set: [{name: 'x:y', value: v}]}}\n",
        13,
        f"{R0}.onAllow.requestHeaders.set[0].name",
    ),
    ("key-header", _spec("  apiKeys: {headers: ['x key']}\n"), 6, "spec.apiKeys.headers"),
]


@pytest.mark.parametrize(
    ("text", "line", "field"),
    [pytest.param(t, ln, f, id=i) for i, t, ln, f in INVALID_HEADER_NAMES],
)
def test_invalid_header_name(tmp_path: Path, text: str, line: int, field: str) -> None:
    """Header names must be HTTP tokens."""
    err = _one(tmp_path, text)
    assert (err.line, err.field, err.code) == (line, field, "field.header")


RESERVED_HEADERS = [
    ("principal-propagated", "{name: x-guardrail-principal, value: v}", ""),
    ("roles-propagated", "{name: x-guardrail-roles, value: v}", ""),
    ("decision-id", "{name: x-guardrail-decision-id, value: v}", "propagateIdentity: false, "),
    ("guardrail-append", "{name: x-guardrail-tenant, value: v, mode: append}", ""),
    ("guardrail-if-absent", "{name: x-guardrail-tenant, value: v, mode: ifAbsent}", ""),
]


@pytest.mark.parametrize(
    ("item", "extra"), [pytest.param(it, e, id=i) for i, it, e in RESERVED_HEADERS]
)
def test_reserved_guardrail_headers(tmp_path: Path, item: str, extra: str) -> None:
    """x-guardrail-* headers the service sets, or that a client could pre-set, are refused."""
    text = VALID + "      onAllow: {" + extra + "requestHeaders: {set: [" + item + "]}}\n"
    err = _one(tmp_path, text)
    field = "spec.routes[0].onAllow.requestHeaders.set[0]"
    assert (err.line, err.field, err.code) == (13, field, "route.header")


@pytest.mark.parametrize(
    "on_allow",
    [
        "{propagateIdentity: false, requestHeaders: {set: [{name: x-guardrail-principal, "
        "value: v}]}}",
        "{requestHeaders: {set: [{name: x-guardrail-tenant, value: v}]}}",
        "{requestHeaders: {set: [{name: x-tenant, value: v, mode: ifAbsent}]}}",
    ],
)
def test_allowed_header_sets(tmp_path: Path, on_allow: str) -> None:
    """Overwriting x-guardrail-* headers (identity ones with propagation off) is fine."""
    _write(tmp_path, {"policy.yaml": VALID + f"      onAllow: {on_allow}\n"})
    assert load_directory(tmp_path).route_count == 1


# --- API keys ------------------------------------------------------------------------------------

KEYS_PREFIX = "spec:\n  apiKeys:\n    keys:\n"


@pytest.mark.parametrize(
    "digest", ["abc", "g" * 64, "a" * 63, "a" * 65, "cc551f29 bff81915", "0x" + "a" * 62]
)
def test_bad_sha256(tmp_path: Path, digest: str) -> None:
    """A key hash is exactly 64 hex digits."""
    text = VALID.replace("spec:\n", KEYS_PREFIX + f"      - {{sha256: '{digest}', principal: a}}\n")
    err = _one(tmp_path, text)
    assert (err.line, err.field, err.code) == (8, "spec.apiKeys.keys[0].sha256", "apikey.hash")


def test_same_hash_two_principals(tmp_path: Path) -> None:
    """One key cannot authenticate as two different callers."""
    digest = "a" * 64
    text = VALID.replace(
        "spec:\n",
        KEYS_PREFIX
        + f"      - {{sha256: {digest}, principal: a}}\n"
        + f"      - {{sha256: {digest.upper()}, principal: b}}\n",
    )
    err = _one(tmp_path, text)
    assert (err.line, err.field, err.code) == (9, "spec.apiKeys.keys[1]", "apikey.conflict")


def test_unknown_key_set(tmp_path: Path) -> None:
    """A keySets entry must name an ApiKeySet of the directory; the known ones are listed."""
    key_set = (
        "apiVersion: guardrail-authz/v1\nkind: ApiKeySet\nmetadata: {name: team-keys}\n"
        "spec: {keys: []}\n"
    )
    text = VALID.replace("spec:\n", "spec:\n  apiKeys:\n    keySets: [team-keys, tema-keys]\n")
    errors = _errors(tmp_path, {"keys.yaml": key_set, "policy.yaml": text})
    assert [(e.file, e.line, e.field, e.code) for e in errors] == [
        ("policy.yaml", 7, "spec.apiKeys.keySets[1]", "ref.unknown"),
    ]
    assert errors[0].message == "unknown ApiKeySet 'tema-keys' (known: team-keys)"


def test_key_set_with_unknown_field(tmp_path: Path) -> None:
    """ApiKeySet specs hold keys only."""
    text = KEY_SET.replace("spec: {}\n", "spec:\n  users: []\n")
    errors = _errors(tmp_path, {"keys.yaml": text, "policy.yaml": VALID})
    assert [(e.file, e.line, e.field, e.code) for e in errors] == [
        ("keys.yaml", 5, "spec.users", "field.unknown"),
    ]


# --- names ---------------------------------------------------------------------------------------


def test_duplicate_policy_names_across_files(tmp_path: Path) -> None:
    """The later definition (by file order) is the error, pointing at the first."""
    other = VALID.replace("paths: [/x]", "paths: [/y]")
    errors = _errors(tmp_path, {"a.yaml": VALID, "b.yaml": "# comment\n" + other})
    assert [(e.file, e.line, e.field, e.code) for e in errors] == [
        ("b.yaml", 2, "metadata.name", "ref.duplicate"),
    ]
    assert errors[0].message == "GuardrailPolicy 'p' already defined at a.yaml:1"


def test_duplicate_key_set_names(tmp_path: Path) -> None:
    """Two ApiKeySets with one name are refused too."""
    errors = _errors(tmp_path, {"keys.yaml": KEY_SET + "---\n" + KEY_SET, "policy.yaml": VALID})
    assert [(e.file, e.line, e.field, e.code) for e in errors] == [
        ("keys.yaml", 6, "metadata.name", "ref.duplicate"),
    ]
    assert errors[0].message.startswith("ApiKeySet 'k' already defined at keys.yaml:1")


def test_duplicate_route_names(tmp_path: Path) -> None:
    """Route names are unique within a policy."""
    text = VALID + (
        "    - name: r\n      match: {paths: [/y]}\n      rules: [{name: ok, effect: allow}]\n"
    )
    err = _one(tmp_path, text)
    assert (err.line, err.field, err.code) == (13, "spec.routes[1]", "ref.duplicate")
    assert "already defined at policy.yaml:7" in err.message


def test_same_route_name_in_two_policies_is_fine(tmp_path: Path) -> None:
    """Route ids are policy/route, so policies may reuse route names."""
    other = VALID.replace("name: p\n", "name: q\n").replace("paths: [/x]", "paths: [/y]")
    _write(tmp_path, {"a.yaml": VALID, "b.yaml": other})
    assert load_directory(tmp_path).route_count == 2


def test_duplicate_rule_names(tmp_path: Path) -> None:
    """Rule names are unique within a route."""
    err = _one(tmp_path, VALID + "        - {name: ok, effect: deny}\n")
    assert (err.line, err.field, err.code) == (13, "spec.routes[0].rules[1]", "rule.duplicate")


# --- match -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "host",
    [
        "*x.example.com",
        "a.*.example.com",
        "*.",
        "**",
        "example.com/path",
        "example.com:8080",
        "[::1]:443",
        "[::1",
    ],
)
def test_bad_host_pattern(tmp_path: Path, host: str) -> None:
    """Hosts are exact names, '*.suffix' or '*', without ports or paths."""
    err = _one(tmp_path, VALID.replace("spec:\n", f"spec:\n  hosts: ['{host}']\n"))
    assert (err.line, err.field, err.code) == (6, "spec.hosts", "match.host")


def test_bad_route_host_pattern(tmp_path: Path) -> None:
    """Route-level hosts are checked like policy hosts."""
    text = VALID.replace("        paths: [/x]\n", "        paths: [/x]\n        hosts: ['a*']\n")
    err = _one(tmp_path, text)
    assert (err.line, err.field, err.code) == (10, "spec.routes[0].match.hosts", "match.host")


@pytest.mark.parametrize("host", ["*", "*.example.com", "Example.COM", "[::1]", "10.0.0.1"])
def test_good_host_patterns(tmp_path: Path, host: str) -> None:
    """The accepted host forms."""
    _write(tmp_path, {"policy.yaml": VALID.replace("spec:\n", f"spec:\n  hosts: ['{host}']\n")})
    assert load_directory(tmp_path).route_count == 1


@pytest.mark.parametrize("port", ["0", "65536", "-1", "'80'", "true", "8080.5", "null"])
def test_bad_port(tmp_path: Path, port: str) -> None:
    """Ports are integers 1-65535, reported per item."""
    text = VALID.replace("spec:\n", f"spec:\n  ports: [443, {port}]\n")
    err = _one(tmp_path, text)
    assert (err.line, err.field, err.code) == (6, "spec.ports[1]", "match.port")


def test_bad_route_port_and_scalar_ports(tmp_path: Path) -> None:
    """Route ports are checked the same way; a single number is not a list."""
    text = VALID.replace("        paths: [/x]\n", "        paths: [/x]\n        ports: [70000]\n")
    assert _found(tmp_path, text) == {(10, "spec.routes[0].match.ports[0]", "match.port")}
    text = VALID.replace("spec:\n", "spec:\n  ports: 443\n")
    assert _found(tmp_path / "b", text) == {(6, "spec.ports", "field.type")}


@pytest.mark.parametrize("method", ["FETCH", "GETS", "*"])
def test_bad_method(tmp_path: Path, method: str) -> None:
    """Methods are the standard HTTP methods (in any case); '*' is written by leaving them out."""
    text = _in_match(f"        methods: [get, '{method}']\n")
    err = _one(tmp_path, text)
    assert (err.line, err.field, err.code) == (10, "spec.routes[0].match.methods", "match.method")
    assert method.upper() in err.message


BAD_PATHS = [
    ("double-star-middle", "paths: ['/a/**/b']", "'**' may only be the last segment"),
    ("double-star-prefix", "prefixes: ['/a/**/b']", "'**' may only be the last segment"),
    ("partial-param", "paths: ['/a/{id']", "use '{name}', '*' or '**'"),
    ("param-suffix", "paths: ['/a/{id}.json']", "use '{name}', '*' or '**'"),
    ("glob-in-segment", "paths: ['/a/b*']", "use '{name}', '*' or '**'"),
    ("bad-param-name", "paths: ['/a/{1d}']", "use '{name}', '*' or '**'"),
    ("relative", "paths: [a/b]", "must start with /"),
    ("relative-prefix", "prefixes: [static]", "must start with /"),
]


@pytest.mark.parametrize(
    ("match", "message"), [pytest.param(m, msg, id=i) for i, m, msg in BAD_PATHS]
)
def test_bad_path_template(tmp_path: Path, match: str, message: str) -> None:
    """Path templates and prefixes are checked; errors name the match block's paths/prefixes."""
    text = VALID.replace("        paths: [/x]\n", f"        {match}\n")
    err = _one(tmp_path, text)
    key = match.split(":", maxsplit=1)[0]
    assert (err.line, err.field, err.code) == (9, f"spec.routes[0].match.{key}", "match.path")
    assert message in err.message


def test_match_without_paths(tmp_path: Path) -> None:
    """A route matches at least one path or prefix."""
    text = VALID.replace("        paths: [/x]\n", "        methods: [GET]\n")
    err = _one(tmp_path, text)
    assert (err.line, err.field, err.code) == (9, "spec.routes[0].match", "match.path")


# --- conflicts ---------------------------------------------------------------------------------

ROUTES_HEAD = HEADER + "  routes:\n"


def _route(name: str, match: str) -> str:
    return (
        f"    - name: {name}\n      match: {{{match}}}\n"
        "      rules: [{name: ok, effect: allow}]\n"
    )


CONFLICTS = [
    ("same-path", "paths: [/a]", "paths: [/a]", "*:* * /a"),
    ("param-and-star", "paths: ['/a/{id}']", "paths: ['/a/*']", "*:* * /a/{}"),
    ("prefix-and-double-star", "prefixes: [/a]", "paths: ['/a/**']", "*:* * /a/**"),
    (
        "same-method",
        "methods: [GET], paths: [/a]",
        "methods: [get, PUT], paths: [/a]",
        "*:* GET /a",
    ),
    ("same-port", "ports: [80], paths: [/a]", "ports: [80], paths: [/a]", "*:80 * /a"),
    ("same-host", "hosts: [a.test], paths: [/a]", "hosts: [A.test], paths: [/a]", "a.test:* * /a"),
]


@pytest.mark.parametrize(
    ("first", "second", "where"),
    [pytest.param(f, s, w, id=i) for i, f, s, w in CONFLICTS],
)
def test_overlapping_routes(tmp_path: Path, first: str, second: str, where: str) -> None:
    """Two routes for the same host, port, path template and method are a conflict."""
    text = ROUTES_HEAD + _route("one", first) + _route("two", second)
    err = _one(tmp_path, text)
    assert (err.line, err.field, err.code) == (10, "spec.routes[1]", "route.conflict")
    assert err.message == f"route 'p/two' overlaps route 'p/one' on {where}"


NO_CONFLICTS = [
    ("other-method", "methods: [GET], paths: [/a]", "methods: [POST], paths: [/a]"),
    ("method-and-any", "methods: [GET], paths: [/a]", "paths: [/a]"),
    ("other-port", "ports: [80], paths: [/a]", "ports: [81], paths: [/a]"),
    ("port-and-any", "ports: [80], paths: [/a]", "paths: [/a]"),
    ("other-host", "hosts: [a.test], paths: [/a]", "hosts: ['*.test'], paths: [/a]"),
    ("literal-and-param", "paths: [/a/b]", "paths: ['/a/{id}']"),
    ("exact-and-prefix", "paths: [/a]", "prefixes: [/a]"),
]


@pytest.mark.parametrize(
    ("first", "second"), [pytest.param(f, s, id=i) for i, f, s in NO_CONFLICTS]
)
def test_routes_that_do_not_overlap(tmp_path: Path, first: str, second: str) -> None:
    """Different methods, ports, hosts or template shapes coexist; precedence decides."""
    _write(tmp_path, {"policy.yaml": ROUTES_HEAD + _route("one", first) + _route("two", second)})
    assert load_directory(tmp_path).route_count == 2


def test_route_repeating_its_own_path_is_not_a_conflict(tmp_path: Path) -> None:
    """A route may list the same template twice (e.g. as a path and as a prefix)."""
    text = ROUTES_HEAD + _route("one", "paths: ['/a/**'], prefixes: [/a]")
    _write(tmp_path, {"policy.yaml": text})
    assert load_directory(tmp_path).route_count == 1


def test_conflict_across_policies(tmp_path: Path) -> None:
    """Policies on the same hosts share one route index, so they conflict too."""
    other = VALID.replace("name: p\n", "name: q\n")
    errors = _errors(tmp_path, {"a.yaml": VALID, "b.yaml": other})
    assert [(e.file, e.line, e.field, e.code) for e in errors] == [
        ("b.yaml", 7, "spec.routes[0]", "route.conflict"),
    ]
    assert errors[0].message == "route 'q/r' overlaps route 'p/r' on *:* * /x"


# --- directories and files ---------------------------------------------------------------------


def test_missing_directory(tmp_path: Path) -> None:
    """A directory that does not exist is one error naming it."""
    missing = tmp_path / "nope"
    err = _load_error(missing).errors
    assert [(e.file, e.line, e.field, e.code) for e in err] == [
        (str(missing), 0, "", "dir.missing")
    ]
    assert str(err[0]) == f"{missing}: policy directory does not exist [dir.missing]"


def test_file_instead_of_directory(tmp_path: Path) -> None:
    """A file given as the policy directory is reported the same way."""
    _write(tmp_path, {"policy.yaml": VALID})
    assert [e.code for e in _load_error(tmp_path / "policy.yaml").errors] == ["dir.missing"]


@pytest.mark.parametrize(
    "files",
    [
        pytest.param({}, id="empty"),
        pytest.param({"README.md": "# not a policy\n", "policy.json": "{}"}, id="other-suffixes"),
        pytest.param({".hidden.yaml": VALID}, id="hidden-file"),
        pytest.param({"empty.yaml": "# nothing\n"}, id="comment-only"),
        pytest.param({"keys.yml": KEY_SET}, id="key-sets-only"),
    ],
)
def test_directory_without_policies(tmp_path: Path, files: dict[str, str | bytes]) -> None:
    """A directory without any GuardrailPolicy is an error, not an allow-nothing snapshot."""
    _write(tmp_path, files)
    errors = _load_error(tmp_path).errors
    assert [(e.file, e.line, e.code) for e in errors] == [(str(tmp_path), 0, "dir.empty")]


def test_yml_suffix_and_subdirectories(tmp_path: Path) -> None:
    """*.yml files are read; subdirectories are not."""
    _write(tmp_path, {"policy.yml": VALID})
    _write(tmp_path / "nested.yaml", {"inner.yaml": "not: [valid"})
    snapshot = load_directory(tmp_path)
    assert snapshot.files == ("policy.yml",)


def test_non_utf8_file(tmp_path: Path) -> None:
    """A file that is not UTF-8 is reported without a line, and the others still load."""
    errors = _errors(tmp_path, {"bad.yaml": b"apiVersion: \xff\xfe\n", "policy.yaml": VALID})
    assert [(e.file, e.line, e.field, e.code) for e in errors] == [
        ("bad.yaml", 0, "", "file.encoding")
    ]
    assert str(errors[0]).startswith("bad.yaml: not UTF-8: ")


def test_unreadable_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An OS error reading a file is file.read (simulated: the tests may run as root)."""
    _write(tmp_path, {"policy.yaml": VALID})
    real = Path.read_text

    def read_text(self: Path, *args: object, **kwargs: object) -> str:
        if self.name == "policy.yaml":
            raise PermissionError(13, "Permission denied")
        return real(self)

    monkeypatch.setattr(Path, "read_text", read_text)
    errors = _load_error(tmp_path).errors
    assert [(e.file, e.code, e.message) for e in errors] == [
        ("policy.yaml", "file.read", "cannot read: Permission denied"),
    ]


# --- collecting, sorting and capping -----------------------------------------------------------


def test_several_errors_reported_and_sorted(tmp_path: Path) -> None:
    """Every mistake of every file comes back in one load, ordered by file, line and field."""
    b_text = VALID.replace("spec:\n", "spec:\n  failMode: maybe\n") + "          status: 404\n"
    a_text = VALID.replace("kind: GuardrailPolicy", "kind: GuardrailPolicy\nzzz: 1\naaa: 2")
    a_text = a_text.replace("name: p\n", "name: q\n")
    errors = _errors(
        tmp_path,
        {"b.yaml": b_text, "a.yaml": a_text, "c.yaml": b"\xff", "a-keys.yaml": "{"},
    )
    assert [(e.file, e.line, e.field, e.code) for e in errors] == [
        ("a-keys.yaml", 1, "", "yaml.syntax"),
        ("a.yaml", 3, "zzz", "field.unknown"),
        ("a.yaml", 4, "aaa", "field.unknown"),
        ("b.yaml", 6, "spec.failMode", "field.choice"),
        ("b.yaml", 8, "spec.routes[0]", "route.conflict"),  # both files route /x
        ("b.yaml", 14, "spec.routes[0].rules[0].status", "rule.deny_only"),
        ("c.yaml", 0, "", "file.encoding"),
    ]
    assert errors == sorted(errors)
    rendered = str(_load_error(tmp_path)).splitlines()
    assert len(rendered) == len(errors)
    assert rendered[1] == (
        "a.yaml:3: zzz: unknown field 'zzz' (known: apiVersion, kind, metadata, spec)"
        " [field.unknown]"
    )
    line = re.compile(r"^[\w.-]+(:\d+)?:( [\w.\[\]]+:)? .+ \[[a-z]+\.[a-z_]+\]$")
    assert all(line.match(r) for r in rendered), rendered


def test_error_cap(tmp_path: Path) -> None:
    """Beyond MAX_ERRORS errors are counted, not kept, and the rendering says how many."""
    extra = "".join(f"  extra{i:03d}: 1\n" for i in range(MAX_ERRORS + 50))
    text = VALID.replace("spec:\n", "spec:\n" + extra)
    _write(tmp_path, {"policy.yaml": text})
    err = _load_error(tmp_path)
    assert len(err.errors) == MAX_ERRORS
    assert err.dropped == 50
    lines = err.render().splitlines()
    assert len(lines) == MAX_ERRORS + 1
    assert lines[-1] == "... and 50 more errors"


def test_error_sink_cap_unit() -> None:
    """The sink keeps the first MAX_ERRORS errors and counts the rest."""
    sink = ErrorSink()
    for i in range(MAX_ERRORS + 3):
        sink.add("field.type", "m", "f.yaml", MAX_ERRORS + 3 - i)
    assert len(sink.errors) == MAX_ERRORS
    assert sink.dropped == 3
    assert [e.line for e in sink.sorted()] == list(range(4, MAX_ERRORS + 4))


def test_policy_error_str_forms() -> None:
    """file:line: field: message [code], dropping the line or field when there is none."""
    assert str(PolicyError("a.yaml", 3, "spec.x", "c.d", "m")) == "a.yaml:3: spec.x: m [c.d]"
    assert str(PolicyError("a.yaml", 3, "", "c.d", "m")) == "a.yaml:3: m [c.d]"
    assert str(PolicyError("/p", 0, "", "dir.empty", "m")) == "/p: m [dir.empty]"


@pytest.mark.parametrize(
    ("snippet", "field", "code"),
    [
        ("          reason: 'Bad Reason'\n", "reason", "rule.reason"),
        ("          message: hello\n", "message", "rule.deny_only"),
        ("          when: {headers: [{name: x-guardrail-principal, present: true}]}\n",
         "when.headers[0].name", "condition.reserved"),
    ],
)  # fmt: skip
def test_rule_fields_checked(tmp_path: Path, snippet: str, field: str, code: str) -> None:
    """Reasons are header-safe codes; deny-only fields and reserved headers are refused."""
    found = _found(tmp_path, _in_rule(snippet))
    assert (13, f"{RULE0}.{field}", code) in found


def test_deny_status_must_be_an_error_status(tmp_path: Path) -> None:
    """A deny rule cannot answer 2xx/3xx, which clients would read as success."""
    text = _in_rule("").replace("effect: allow", "effect: deny") + "          status: 302\n"
    assert (13, f"{RULE0}.status", "field.range") in _found(tmp_path, text)


@pytest.mark.parametrize("key", ["hosts", "ports"])
def test_empty_host_or_port_list(tmp_path: Path, key: str) -> None:
    """An empty hosts/ports list is an error, not a silent match-nothing or match-all."""
    assert (6, f"spec.{key}", "field.empty") in _found(tmp_path, _spec(f"  {key}: []\n"))
