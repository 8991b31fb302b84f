"""Signatures for template injection, Log4Shell, unsafe deserialization, CRLF and NoSQL
injection, the URL triggers of the SSRF check, and the triggers that ask for decoding."""

from __future__ import annotations

from guardrail_authz.payload.detect.base import Action, Rule, hit, trigger

_END = r"(?:\x00|$)"
_OP = r"[\s]*[*+\-/][\s]*"
_B64_START = r"(?:^|[^A-Za-z0-9+/_-])"  # a base64 marker must start the encoded run

SSTI: tuple[Rule, ...] = (
    hit(
        "ssti",
        "arithmetic-probe",
        rf"\{{\{{[\s]*\d+{_OP}['\"]?\d+['\"]?[\s]*\}}\}}|\$\{{[\s]*\d+{_OP}\d+[\s]*\}}|"
        rf"#\{{[\s]*\d+{_OP}\d+[\s]*\}}|\*\{{[\s]*\d+{_OP}\d+[\s]*\}}|"
        rf"<%=?[\s]*\d+{_OP}\d+[\s]*%>|@\([\s]*\d+{_OP}\d+[\s]*\)|\[\[[\s]*\$\{{",
    ),
    hit("ssti", "polyglot", r"\$\{\{<%\[%|\{\{\s*\}\}\s*\$\{\s*\}\s*<%"),
    hit(
        "ssti",
        "python-internals",
        r"__(?:mro|subclasses|globals|builtins)__|"
        r"__class__\s*(?:\.|\[\s*['\"]|\|\s*attr)\s*__(?:base|bases|mro|subclasses|init|dict)__|"
        r"__import__\s*\(\s*['\"](?:os|subprocess|pty|socket|sys|builtins)\b",
    ),
    hit("ssti", "python-internals", r"\{[{%][^\x00}%]*__[a-z]+__"),
    hit(
        "ssti",
        "template-object",
        r"\{\{\s*(?:config\s*(?:\}\}|\.items\s*\(|\.__|\[|\|)|self\s*(?:\}\}|\._|\.__)|"
        r"request\s*(?:\.application|\.environ|\|\s*attr|\.__|\[)|"
        r"(?:lipsum|cycler|joiner|namespace|url_for|get_flashed_messages|range)\s*(?:\.|\|\s*attr))",
    ),
    hit(
        "ssti",
        "template-statement",
        r"\{%[^%\x00]*(?:__[a-z]+__|\bos\.|popen|subprocess|system\s*\(|eval\s*\(|"
        r"exec\s*\(|import\s+os\b|\bconfig\b|request\.)",
    ),
    hit(
        "ssti",
        "filter-abuse",
        r"\|\s*attr\s*\(|\|\s*(?:filter|map|reduce|sort)\s*\(\s*['\"](?:system|exec|passthru|"
        r"shell_exec|popen)['\"]|_self\.env\.(?:registerundefinedfiltercallback|getfilter)",
    ),
    hit(
        "ssti",
        "expression-language",
        r"[$*#@]\{\s*T\s*\(\s*java\.|[$*#%]\{[^}\x00]*(?:java\.lang\.|getruntime\s*\(|"
        r"processbuilder|getclass\s*\(\s*\)|forname\s*\(|\.exec\s*\(|_memberaccess|"
        r"@java\.lang|new\s+java\.)",
    ),
    hit(
        "ssti",
        "expression-language",
        r"%\{\s*\(?\s*#(?:_memberaccess|context|application|request|session|parameters|attr)\b|"
        r"\(#_memberaccess|#set\s*\(\s*\$\w+\s*=[^\x00]*(?:\.class|getclass|forname)",
    ),
    hit(
        "ssti",
        "freemarker",
        r"freemarker\.template\.utility\.(?:execute|objectconstructor|jythonruntime)|"
        r"\?new\s*\(\s*\)|<#assign\s+\w+\s*=\s*['\"]freemarker",
    ),
    hit(
        "ssti",
        "erb",
        r"<%[=-]?[^%\x00]*(?:\bsystem\s*[(\s'\"]|\bexec\s*\(|\beval\s*\(|\bpopen\b|`|"
        r"\bio\.popen|\bfile\.(?:read|open)|\bkernel\.|%x\{|\brequire\s+['\"]|\bspawn\b|"
        r"\bimport\s+os\b)",
    ),
    hit(
        "ssti",
        "smarty",
        r"\{/?php\}|\{\$smarty\.(?:version|template_object|now)|\{system\s*\(|"
        r"smarty_internal_write_file",
    ),
    hit(
        "ssti",
        "js-runtime",
        r"\{\{[^}\x00]*(?:require\s*\(|child_process|process\.(?:mainmodule|binding|env)|"
        r"global\.process)|\{\{#with\s+['\"][^'\"\x00]*['\"]\s+as\s*\|",
    ),
    hit("ssti", "mako", r"\$\{\s*(?:self\.module|__import__|import\s+os)|<%\s*import\s+os\b"),
    # Code execution reached from any template syntax: Node's process object, the JVM's
    # Runtime, .NET's Process, Velocity's $class tool, Ruby interpolation running a command.
    hit(
        "ssti",
        "code-execution",
        r"\bprocess\.mainmodule\b|\bglobal\.process\.|\bgetruntime\s*\(\s*\)\s*\.\s*exec\s*\(|"
        r"\bsystem\.diagnostics\.process\.start\s*\(|\$class\.(?:inspect|type|forname)\b|"
        r"#\{[^}\x00]*(?:`|%x|\bsystem\s*[(\s'\"]|\bexec\s*\(|\bspawn\b|\bio\.popen|\beval\s*\()",
    ),
    hit(
        "ssti",
        "expression-language",
        r"\$\{\s*(?:applicationscope|sessionscope|requestscope|pagecontext|initparam)\b",
    ),
    hit(
        "ssti",
        "template-object",
        r"\{\{\s*settings\.(?:secret_key|databases)\b|\{%\s*debug\s*%\}|"
        r"\{\{[^}\x00]*(?:\bapp\.request\.(?:server|cookies|headers)|\bdump\s*\(\s*(?:app|_context)\b)",
    ),
)

LOG4SHELL: tuple[Rule, ...] = (
    hit("log4shell", "jndi", r"\$\{\s*jndi\s*:"),
    hit(
        "log4shell",
        "lookup",
        r"\$\{\s*(?:env|sys|java|main|ctx|k8s|docker|spring|web|bundle|jvmrunargs|log4j|marker|"
        r"map|sd|event|base64)\s*:[^}\x00]*\}",
    ),
    trigger(
        "log4shell",
        Action.LOOKUP,
        "nested",
        r"\$\{[^}\x00]*(?::-|\$\{|lower\s*:|upper\s*:|date\s*:)",
    ),
)

DESERIALIZATION: tuple[Rule, ...] = (
    hit("deserialization", "java", rf"{_B64_START}rO0AB[A-Za-z0-9+/_-]{{6}}", caseless=False),
    hit("deserialization", "java", r"(?:^|[^0-9a-f])aced0005[0-9a-f]{4}"),
    hit(
        "deserialization",
        "pickle",
        rf"{_B64_START}(?:gA[SW]V|gA[JN][j9d]|Y29zCnN5c3Rlb|Y3Bvc2l4CnN5c3Rlb|Y19fYnVpbHRpbl9fCm|"
        r"Y2J1aWx0aW5zCm|Y3N1YnByb2Nlc3MK|Y250CnN5c3Rlb)[A-Za-z0-9+/]{6}",
        caseless=False,
    ),
    hit(
        "deserialization",
        "pickle",
        r"(?:^|[^\w])c(?:os|posix|nt|subprocess|builtins|__builtin__|commands|pty|socket|sys)\n"
        r"(?:system|popen|call|check_output|check_call|run|popen2|eval|exec|getattr|spawn\w*|"
        r"__import__|execfile|getoutput)\n",
        caseless=False,
    ),
    hit("deserialization", "php", r"(?:^|[^\w])[OC]:\+?\d+:\"[\w\\]+\":\d+:\{", caseless=False),
    hit("deserialization", "php", r"(?:^|[^\w])a:\d+:\{(?:i:\d+;|s:\d+:\")", caseless=False),
    hit("deserialization", "dotnet", r"AAEAAAD/////", caseless=False),
    hit("deserialization", "node-serialize", r"_\$\$nd_func\$\$_"),
    hit("deserialization", "php", r"\bphar://"),
    trigger(
        "deserialization",
        Action.BASE64,
        "base64",
        rf"{_B64_START}(?:H4sI|Tzo|Qzo|YTo)[A-Za-z0-9+/]{{8}}",
        caseless=False,
    ),
    hit("deserialization", "ruby", rf"{_B64_START}BAh[vV1jT][A-Za-z0-9+/]{{6}}", caseless=False),
    hit(
        "deserialization",
        "yaml-tag",
        r"!!python/(?:object|name|module|apply)|!!(?:javax?|com\.sun|sun|org\.(?:apache|springframework)"
        r"|jdk)\.|!ruby/(?:object|hash|struct|marshal|class)|tag:yaml\.org,2002:python/",
    ),
    hit(
        "deserialization",
        "xml-decoder",
        r"class\s*=\s*['\"]java\.beans\.xmldecoder|<(?:java\.lang\.processbuilder|"
        r"java\.beans\.eventhandler|dynamic-proxy)\b|<object\s+class\s*=\s*['\"]java\.lang\."
        r"(?:processbuilder|runtime)",
    ),
    hit(
        "deserialization",
        "gadget-class",
        r"\bcom\.sun\.rowset\.jdbcrowsetimpl\b|\borg\.apache\.commons\.collections4?\.functors\."
        r"(?:invoker|chained|constant|instantiate)transformer\b|"
        r"\bcom\.sun\.org\.apache\.xalan\.internal\.xsltc\.trax\.templatesimpl\b|"
        r"\bjavax\.management\.badattributevalueexpexception\b|"
        r"\borg\.springframework\.beans\.factory\.config\.propertypathfactorybean\b|"
        r"\bcom\.mchange\.v2\.c3p0\.(?:wrapperconnectionpooldatasource|jndirefforwardingdatasource)\b|"
        r"\borg\.apache\.xbean\.propertyeditor\.jndiconverter\b|"
        r"\bch\.qos\.logback\.core\.db\.jndiconnectionsource\b|\bjava\.beans\.xmldecoder\b|"
        r"\bjavax\.script\.scriptenginemanager\b|\bjava\.net\.urlclassloader\b|"
        r"\bsystem\.windows\.data\.objectdataprovider\b|"
        r"\bsystem\.configuration\.install\.assemblyinstaller\b|"
        r"\bsystem\.activities\.presentation\.workflowdesigner\b|"
        r"\bsystem\.workflow\.componentmodel\.serialization\.activitysurrogateselector\b|"
        r"\bsystem\.security\.principal\.windowsidentity\b|\bsystem\.windows\.forms\.bindingsource\b",
    ),
    hit(
        "deserialization",
        "type-hint",
        r"[\"']@type[\"']\s*:\s*[\"']l?(?:com|java|javax|org|sun|ch|br|oracle)\.|"
        r"[\"']\$type[\"']\s*:\s*[\"'][^\"'\x00]*(?:objectdataprovider|system\.diagnostics\.process|"
        r"system\.io\.fileinfo|system\.management\.automation)",
    ),
)

# Raw request bodies: the binary stream headers, anywhere in the body (start checks in Python).
RAW_DESERIALIZATION: tuple[Rule, ...] = (
    hit("deserialization", "java", r"\xac\xed\x00\x05[\x70-\x7e]", caseless=False),
    hit(
        "deserialization",
        "dotnet",
        r"\x00\x01\x00\x00\x00\xff\xff\xff\xff\x01\x00\x00\x00",
        caseless=False,
    ),
    *DESERIALIZATION,
)

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
_ENCODED_NL = r"(?:%(?:25)*0d|%(?:25)*0a|\\r|\\n|%e5%98%8a|%e5%98%8d|%u000[ad]|%e2%80%a[89]|%c2%85)"

CRLF: tuple[Rule, ...] = (
    hit("crlf", "header-injection", rf"{_NL}[ \t]*{_STRONG}"),
    hit("crlf", "header-injection", r"\r\n\r\n\s*<(?:html|script|body|head|svg|img|iframe)\b"),
    hit("crlf", "request-splitting", r"\bhttp/1\.[01]\s*\r?\n"),
    hit("crlf", "log-forging", rf"{_NL}+[ \t]*{_LOG_LINE}"),
    hit(
        "crlf",
        "protocol-smuggling",
        r"\r?\n(?:SET|DEL|CONFIG SET|FLUSHALL|FLUSHDB|SLAVEOF|REPLICAOF|EVAL|MODULE LOAD|"
        r"SHUTDOWN|QUIT|MAIL FROM|RCPT TO|DATA)\b[^\r\n\x00]*\r?\n",
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
    hit("crlf", "unicode-newline", r"\xe5\x98[\x8a\x8d][ \t]*[a-z][\w-]*[ \t]*:"),
)

_MONGO = (
    r"(?:where|ne|eq|gt|gte|lt|lte|in|nin|regex|options|exists|expr|function|accumulator|or|and|"
    r"not|nor|all|elemmatch|size|type|jsonschema|text|search|mod|lookup|match|group|project|"
    r"unionwith|merge|out|set|unset|inc|push|pull|rename|where|comment|geowithin|near)"
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
        r"(?:\|\||&&)\s*(?:['\"]?\w+['\"]?\s*===?\s*['\"]?\w|this\.)|"
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
        r"[/\\]{2}[^/?#\x00\s]*(?:[@\[\\%]|localhost|metadata|internal|instance-data|kubernetes|"
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
