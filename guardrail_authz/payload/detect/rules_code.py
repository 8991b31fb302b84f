"""Signatures for code reached through data: server-side template injection, Log4Shell
lookups and unsafe deserialization (text markers in values, binary headers in raw bodies)."""

from __future__ import annotations

from guardrail_authz.payload.detect.base import Action, Rule, hit, trigger

_END = r"(?:\x00|$)"
_OP = r"[\s]*[*+\-/][\s]*"
_NUM = r"['\"]?\d+['\"]?"
_B64_START = r"(?:^|[^A-Za-z0-9+/_-])"  # a base64 marker must start the encoded run

SSTI: tuple[Rule, ...] = (
    hit(
        "ssti",
        "arithmetic-probe",
        rf"(?:\{{\{{|[$#*@]\{{|<%=?|@\()\s*{_NUM}{_OP}{_NUM}\s*(?:\}}\}}|\}}|%>|\))|\[\[\s*\$\{{",
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
        r"[$#]\{[^}\x00]*\.(?:getclass|getclassloader|protectiondomain)\b|"
        r"<#assign[^>\x00]*\.class\.|\bgetclassloader\s*\(\s*\)",
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
