"""Signatures for protocol abuse: CRLF (header, log and protocol) injection, NoSQL operator
injection, the URL triggers of the SSRF check, and the triggers that ask for decoding."""

from __future__ import annotations

from guardrail_authz.payload.detect.base import Action, Rule, hit, trigger

_END = r"(?:\x00|$)"
_NL = r"(?:[\r\n]|\xe2\x80[\xa8\xa9]|\xc2\x85)"  # CR, LF, and U+2028, U+2029, NEL
# Header shapes that mean injection after a raw line break in any field, body text included.
_STRONG = (
    r"(?:set-cookie\s*:\s*[^\s=\x00]+=|transfer-encoding\s*:\s*chunked|content-length\s*:\s*\d|"
    r"x-xss-protection\s*:\s*0|access-control-allow-(?:origin|credentials)\s*:|"
    r"location\s*:\s*(?:https?:|//|javascript:)|refresh\s*:\s*\d+\s*;\s*url=|"
    r"x-(?:forwarded-(?:for|host|proto)|real-ip|original-url|rewrite-url|http-method-override)"
    r"\s*:|authorization\s*:\s*(?:bearer|basic|digest)\s|cookie\s*:\s*[^\s=\x00]+=|"
    r"host\s*:\s*[\w.:-]+\s*(?:[\r\n]|\x00|$)|bcc\s*:\s*[^\s@\x00]+@|http/1\.[01]\s+\d{3}\b)"
)
_LOG_LINE = (
    r"(?:\[\s*(?:info|warn|warning|error|debug|trace|fatal|notice|crit)\s*\]|"
    r"\d{4}-\d\d-\d\d[ t]\d\d:\d\d[^\r\n\x00]*\b(?:info|warn|warning|error|debug|trace|fatal)\b)"
)
# Line breaks as text: percent-encoded (also twice), escaped, and Unicode characters that a
# lenient server truncates to CR or LF (U+560A, U+010D, ...) or treats as a line break.
_ENCODED_NL = (
    r"(?:%(?:25)*0d|%(?:25)*0a|\\r|\\n|%e5%98%8[ad]|%c4%8[ad]|%u000[ad]|%e2%80%a[89]|%c2%85)"
)

CRLF: tuple[Rule, ...] = (
    hit("crlf", "header-injection", rf"{_NL}[ \t]*{_STRONG}"),
    hit("crlf", "header-injection", r"\r\n\r\n\s*<(?:html|script|body|head|svg|img|iframe)\b"),
    hit("crlf", "request-splitting", r"\bhttp/1\.[01]\s*\r?\n"),
    hit("crlf", "log-forging", rf"{_NL}+[ \t]*{_LOG_LINE}"),
    # Redis and SMTP commands smuggled between CRLFs, in upper case as clients send them.
    hit(
        "crlf",
        "protocol-smuggling",
        r"\r\n(?:SET|DEL|CONFIG SET|FLUSHALL|FLUSHDB|SLAVEOF|REPLICAOF|EVAL|MODULE LOAD|"
        r"SHUTDOWN|MAIL FROM:|RCPT TO:)(?: [^\r\n\x00]*)?\r\n",
        caseless=False,
    ),
    # Outside body fields a raw line break followed by any header-like name is injection.
    Rule("crlf", "crlf.header-injection", rf"{_NL}[ \t]*[a-z][\w-]*[ \t]*:", Action.SOFT),
    # Encodings that survive one decoding by the server, or a lenient Unicode truncation.
    hit(
        "crlf",
        "encoded-newline",
        rf"(?:%%0[ad]0[ad]|{_ENCODED_NL})+(?:%20|%09|[\s+])*"
        r"(?:[a-z][\w-]*(?:%20|\s)*(?::|%3a)|http/1|<[a-z!]|%3c[a-z!])",
    ),
    hit("crlf", "log-forging", rf"{_ENCODED_NL}+(?:%20|[\s+])*{_LOG_LINE}"),
    hit("crlf", "unicode-newline", r"(?:\xe5\x98|\xc4)[\x8a\x8d][ \t]*[a-z][\w-]*[ \t]*:"),
)

_MONGO = (
    r"(?:where|ne|eq|gt|gte|lt|lte|in|nin|regex|options|exists|expr|function|accumulator|or|and|"
    r"not|nor|all|elemmatch|size|type|jsonschema|text|search|mod|lookup|match|group|project|"
    r"unionwith|merge|out|set|unset|inc|push|pull|rename|comment|geowithin|near)"
)

NOSQL: tuple[Rule, ...] = (
    hit("nosql", "operator-json", rf"(?:['\"]\${_MONGO}['\"]|[{{,]\s*\${_MONGO})\s*:"),
    hit("nosql", "operator-param", rf"\[\s*\${_MONGO}\s*\]"),
    hit("nosql", "where", r"\$where\s*(?:[:=]|['\"]\s*:)"),
    # Server-side JavaScript ($where, mapReduce, $function): quote breakouts, loops, sleeps,
    # shell helpers, and a value that is itself a predicate on `this`.
    hit(
        "nosql",
        "js-injection",
        r"['\"]\s*\|\|\s*['\"]?\w*['\"]?\s*==|['\"]\s*;\s*return\s+(?:true|1)\b|"
        r";\s*while\s*\(\s*(?:true|1)\s*\)|(?:['\"]\s*[;|&+]+|;|^|\x00)\s*sleep\s*\(\s*\d{3,}\s*\)|"
        r"\bsleep\s*\(\s*\d{3,}\s*\)\s*(?:\|\||&&|;)|"
        r"(?:^|\x00|['\"])\s*(?:\|\||&&)\s*(?:['\"]?\w+['\"]?\s*===?\s*['\"]?\w|this\.)|"
        r"\bdo\s*\{[^}\x00]*\}\s*while\s*\(",
    ),
    hit(
        "nosql",
        "js-injection",
        r"\bdb\.(?:\w+\.(?:drop|remove|insert\w*|update\w*|delete\w*|find\w*|aggregate|"
        r"mapreduce)|dropdatabase|getcollection|eval|getsiblingdb)\s*\(|"
        r"(?:^|\x00)\s*(?:return\s+)?this(?:\.\w+)+\s*(?:[=!<>]=?|\.match\s*\()|"
        r"\bfunction\s*\(\s*\)\s*\{[^}\x00]*\bthis\.\w+",
    ),
)

NOSQL_KEYS: tuple[Rule, ...] = (
    hit("nosql", "operator-key", rf"(?:^|\x00)\s*\${_MONGO}\s*{_END}"),
    hit("nosql", "operator-param", rf"\[\s*\${_MONGO}\s*\]"),
)

CRLF_KEYS: tuple[Rule, ...] = (
    hit("crlf", "header-injection", r"[\r\n]"),
    hit("crlf", "encoded-newline", r"%(?:25)*0[ad]"),
)

_SCHEMES = (
    r"(?:file|gopher|dict|ftps?|sftp|tftp|ldaps?|ldapi|jar|netdoc|php|phar|expect|smb|telnet|"
    r"rmi|iiop|glob|ogg)"
)
# Triggers only: each match sends the value to ssrf.classify_url, which reads the value from
# its start. They are unanchored where anchoring would cost scan time (no literal to start
# from): a URL inside prose costs one needless Python call, never a finding.
SSRF: tuple[Rule, ...] = (
    trigger("ssrf", Action.URL, "scheme", rf"(?:^|\x00)\s*{_SCHEMES}:"),
    trigger(
        "ssrf",
        Action.URL,
        "authority",
        r"[/\\]{2}[^/?\x00\s]*(?:[@\[\\%]|localhost|metadata|internal|instance-data|kubernetes|"
        r"\.nip\.io|\.sslip\.io|\.xip\.io|localtest\.me|lvh\.me|vcap\.me|\.\s*(?:[/:?#\x00]|$))|"
        r"[/\\]{2}(?:0x|\d)",
    ),
    trigger("ssrf", Action.URL, "special-scheme", r"(?:^|\x00)\s*https?:\s*[^/\s\x00]"),
    trigger(
        "ssrf",
        Action.URL,
        "nested-url",
        r"(?:[=?&/]|%3d)(?:https?|gopher|file|dict|ftps?|ldaps?|jar|php|tftp)(?::|%3a)(?://|%2f%2f)",
    ),
    trigger(
        "ssrf",
        Action.URL,
        "bare-host",
        r"(?:^|\x00)\s*(?:localhost|metadata|instance-data|127\.|0x|169\.254\.|100\.100\.100\.200|"
        r"168\.63\.129\.16|\[)",
    ),
)

# Values worth decoding: percent-encoding, entities, backslash escapes, SQL comments, and the
# Unicode compatibility characters that NFKC folds to ASCII (fullwidth forms, odd spaces,
# zero-width characters, dot leaders, circled and mathematical letters, ligatures).
DECODE: tuple[Rule, ...] = (
    trigger("", Action.DECODE, "percent", r"%[0-9a-f]{2}|%u[0-9a-f]{4}"),
    trigger(
        "",
        Action.DECODE,
        "entity",
        r"&(?:#x?[0-9a-f]|[a-z][a-z0-9]{1,30};|(?:lt|gt|amp|quot|apos|nbsp|tab|newline|colon)"
        r"(?:[^a-z=\x00]|$))",
    ),
    trigger("", Action.DECODE, "escape", r"\\(?:u\{?[0-9a-f]{4}|x[0-9a-f]{2}|[rnt])"),
    trigger("", Action.DECODE, "comment", r"/\*"),
    trigger("", Action.DECODE, "dot-segment", r"[/\\]\.[/\\]"),
    Rule(
        "",
        "any.unicode",
        r"\xc2[\xa0\xaa\xad\xb2\xb3\xb9\xba]|\xc5\xbf|\xe1\xa0\x8e|"
        r"\xe2(?:\x80[\x80-\x8f\xa4\xa5\xa8\xa9\xaf]|\x81[\xa0\xb0-\xbf]|\x82[\x80-\x9f]|"
        r"\x84[\x80-\xbf]|\x85[\xa0-\xbf]|\x91[\xa0-\xbf]|\x92[\x80-\xbf]|\x93[\x80-\xbf])|"
        r"\xe2(?:\x88[\x95\x96]|\x81\x84|\xa7[\xb8\xb9])|\xe3\x80\x80|\xef(?:\xac[\x80-\x86]|\xb9[\x90-\xab]|\xbb\xbf|\xbc[\x80-\xbf]|"
        r"\xbd[\x80-\x9e])|\xf0\x9d[\x90-\x9f]",
        Action.DECODE,
        caseless=False,
    ),
)
