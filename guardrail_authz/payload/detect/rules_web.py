"""Signatures for SQL injection and cross-site scripting, next to libinjection's tokenizers.

Conventions for every pattern in this package: caseless unless said otherwise, `[^\\x00]`
instead of `.`, and every negated class excludes NUL, so that no match spans two values of
a joined scan. `_S` is SQL whitespace, where a '+' also stands for a space (query strings).
"""

from __future__ import annotations

from guardrail_authz.payload.detect.base import Action, Rule, hit, trigger

_S = r"[\s+]"
_END = r"(?:\x00|$)"
_Q = r"['\"`]"

SQLI: tuple[Rule, ...] = (
    hit(
        "sqli",
        "union-select",
        rf"\bunion(?:{_S}|\()+(?:all{_S}+|distinct{_S}+)?\(?{_S}*select(?:{_S}|\()+"
        r"(?:\*|@@|null\b|\d|0x|'|\"|\(|"
        r"(?:concat|group_concat|char|version|user|database|schema|load_file|table_name|"
        r"column_name|username|password|name|id)\b|[\w.`]+[\s+]*(?:,|--|#|\bfrom\b))",
    ),
    hit(
        "sqli",
        "stacked-query",
        rf";{_S}*(?:drop{_S}+(?:table|database|schema|view|user|procedure|function|index)\b|"
        rf"delete{_S}+from\b|insert{_S}+into\b|update{_S}+[\w.`\"\[\]]+{_S}+set\b|"
        rf"truncate{_S}+(?:table{_S}+)?[\w`]|alter{_S}+(?:table|database|user|login)\b|"
        rf"create{_S}+(?:table|database|user|login|procedure|function|trigger)\b|"
        rf"exec(?:ute)?(?:{_S}|\()+(?:xp_|sp_|master\.|@|\(|immediate\b)|declare{_S}+@|"
        rf"shutdown{_S}*(?:with\b|--|#|;|{_END})|waitfor{_S}+(?:delay|time)\b|"
        rf"select{_S}+(?:\*|@@|null\b|\d|pg_sleep|sleep|benchmark|version|load_file|"
        rf"[\w.]+[\s+]*(?:,|\(|{_S}from\b)))",
    ),
    hit("sqli", "time-based", rf"\bpg_sleep{_S}*\({_S}*\d|\bbenchmark{_S}*\({_S}*\d+{_S}*,"),
    hit(
        "sqli",
        "time-based",
        rf"(?:['\"`)=(,|&]|\b(?:and|or|xor|select|if|then|else|when|not)\b){_S}*"
        rf"sleep{_S}*\({_S}*\d",
    ),
    hit("sqli", "time-based", rf"\bsleep\(\d+\){_S}*(?:--|#|/\*)"),
    hit("sqli", "time-based", rf"\bwaitfor{_S}+(?:delay|time){_S}+['\"]\d"),
    hit("sqli", "time-based", r"\bdbms_(?:pipe\.receive_message|lock\.sleep)\b"),
    hit("sqli", "time-based", r"\brandomblob\s*\(\s*\d{6,}"),
    hit(
        "sqli",
        "catalog",
        r"\binformation_schema\b|\bmysql\.(?:user|db)\b|\bsqlite_master\b|\bpg_(?:catalog|shadow)\b|"
        r"\bsys\.(?:objects|tables|columns|databases|sysobjects|sql_logins)\b|\bsysobjects\b|"
        r"\bmaster\.\.sysdatabases\b|\bmsysobjects\b|\bdba_users\b",
    ),
    hit(
        "sqli",
        "tautology",
        rf"{_Q}[\s+)]*(?:or|\|\||xor)[\s+(]*'[^'\x00]{{0,20}}'[\s+]*(?:=|like|<>|!=)[\s+]*'",
    ),
    hit(
        "sqli",
        "tautology",
        rf"{_Q}[\s+)]*(?:or|\|\||xor|and|&&)[\s+(]+['\"]?\d+['\"]?{_S}*(?:=|<|>|like\b){_S}*"
        r"['\"]?\d+",
    ),
    hit(
        "sqli",
        "tautology",
        rf"{_Q}[\s+)]*(?:or|\|\|)[\s+(]+(?:true|1|not{_S}+false)[\s+)]*(?:--|#|/\*|;|{_END})",
    ),
    hit("sqli", "tautology", rf"\b\d+[\s+)]+or[\s+(]+\d+{_S}*(?:=|<|>|like\b){_S}*\d+\b"),
    hit("sqli", "tautology", rf"\b\d+[\s+)]+(?:or|\|\|)[\s+(]+(?:true|not{_S}+false)\b"),
    hit(
        "sqli",
        "subquery",
        rf"{_Q}[\s+)]*(?:\|\||\+|-|\band\b|\bor\b|&&|\bxor\b|,|=|<|>)[\s+]*\({_S}*"
        rf"(?:select|case{_S}+when)\b",
    ),
    hit("sqli", "quote-comment", rf"[\w)]['\"`][\s+)]*(?:--[\s+-]*|#|/\*)[\s+]*{_END}"),
    hit(
        "sqli",
        "order-by-probe",
        rf"(?:['\")\d]|^|\x00){_S}*(?:order|group){_S}+by{_S}+\d+{_S}*(?:--|#|/\*|,|{_END})",
    ),
    # A value that is nothing but a tautology or a quote probe: "or 1=1--", "'||'", "'+'".
    hit(
        "sqli",
        "tautology",
        rf"(?:^|\x00){_S}*(?:or|\|\||and|&&|xor)[\s+(]+(?:(?:\d+|'\w*'|\"\w*\"){_S}*(?:=|<|>|like\b)"
        rf"{_S}*(?:\d+|'\w*'|\"\w*\")|true\b|not{_S}+false\b)",
    ),
    hit("sqli", "quote-probe", rf"(?:^|\x00)\s*['\"]\s*(?:\|\||[-+&^*|])\s*['\"]\s*{_END}"),
    hit(
        "sqli",
        "function",
        r"\b(?:load_file|extractvalue|updatexml|xp_cmdshell|xp_dirtree|xp_regread|sp_oacreate|"
        r"sp_executesql|utl_http\.request|utl_inaddr\.get_host_\w+|dbms_xmlgen|sys_eval|sys_exec)"
        r"[\s+]*\(",
    ),
    hit("sqli", "function", r"\bxp_cmdshell\b"),
    hit("sqli", "into-outfile", rf"\binto{_S}+(?:out|dump)file{_S}+['\"]"),
    hit("sqli", "version-probe", r"@@(?:version|datadir|hostname|basedir|servername|tmpdir)\b"),
    hit("sqli", "char-concat", r"\b(?:char|chr)\(\s*\d+\s*(?:,\s*\d+\s*){2,}\)"),
    hit(
        "sqli",
        "conditional",
        rf"\b(?:if|iif)\({_S}*\d+{_S}*[=<>]+{_S}*\d+{_S}*,|"
        rf"\bcase{_S}+when[\s+(]+\d+{_S}*={_S}*\d+[\s+)]+then\b",
    ),
    # When libinjection is asked: a quote, number or bracket followed by SQL-ish syntax, a
    # leading keyword, or a comment; plain prose with apostrophes never gets here.
    trigger(
        "sqli",
        Action.SQLI,
        "tokenize",
        rf"{_Q}[\s+)]*(?:[)=;|&<>!*/%^-]|--|#|(?:or|and|xor|union|select|having|order|group|"
        r"limit|into|where|like|rlike|regexp|div|is|not|in|between|procedure|waitfor|exec|sleep|"
        r"benchmark|as|from)[\s+(])",
    ),
    trigger(
        "sqli",
        Action.SQLI,
        "tokenize",
        r"\d[\s+)]+(?:or|and|xor|union|having|order|group|limit|procedure|into|div|like|rlike|"
        r"regexp|waitfor)[\s+(]|\d[\s+)]*(?:;|--|#|\|\||&&)",
    ),
    trigger(
        "sqli",
        Action.SQLI,
        "tokenize",
        rf"(?:^|\x00)[\s+(]*(?:and|or|xor|having|union|select|exec|declare|waitfor|insert|update|"
        rf"delete|drop){_S}+(?:\d|'|\"|@|\(|\*|(?:null|true|false|not|exists|all|select|distinct|"
        rf"from|into|table|sleep|benchmark){_S})|\(\s*(?:select|case){_S}|;{_S}*(?:select|drop|"
        rf"insert|update|delete|exec|declare|shutdown){_S}",
    ),
)

_EVENTS = (
    "abort|activate|afterprint|animation(?:start|end|iteration)|auxclick|beforeprint|"
    "beforeunload|begin|blur|canplay|change|click|contextmenu|copy|cut|dblclick|drag|"
    "drag(?:start|end|enter|leave|over)|drop|end|error|finish|focus|focusin|focusout|"
    "formdata|hashchange|input|invalid|keydown|keypress|keyup|load|loadstart|message|"
    "mouse(?:down|enter|leave|move|out|over|up|wheel)|paste|pagehide|pageshow|pointer\\w+|"
    "popstate|readystatechange|repeat|reset|resize|scroll|search|select|start|submit|"
    "toggle|touch(?:start|end|move)|transition(?:end|start|run)|unload|wheel"
)

XSS: tuple[Rule, ...] = (
    hit("xss", "script-tag", r"<[\s/]*script\b|<\s*/\s*script\s*>"),
    hit("xss", "event-handler", r"<[a-z][^>\x00]*[\s/\"'`]on[a-z]{3,}[\s/]*="),
    hit("xss", "event-handler", rf"(?:['\"`]|^|\x00)[\s/]*on(?:{_EVENTS})\s*=[^=\x00]"),
    hit(
        "xss",
        "event-handler",
        rf"[\s/'\"`]on(?:{_EVENTS})\s*=\s*['\"`]?[^\s'\"`>=\x00]*[(`]",
    ),
    hit(
        "xss",
        "javascript-url",
        r"(?:^|\x00|[\s=(\"'`:>])(?:j\s*a\s*v\s*a|v\s*b|l\s*i\s*v\s*e)\s*s\s*c\s*r\s*i\s*p\s*t\s*:"
        r"\s*(?:[\w.$\[\]]+\s*[(`=]|//|/\*|\[|['\"`(]|%[0-9a-f]{2}|&#|\\[ux]|void\b|this\.|"
        r"[a-z]+\.[a-z]+)",
    ),
    hit(
        "xss",
        "dangerous-tag",
        r"<[\s/]*(?:iframe|frame|frameset|object|embed|applet|isindex|portal|bgsound|layer|"
        r"ilayer|import|xss)[\s/>]",
    ),
    hit("xss", "dangerous-tag", r"<[\s/]*base[\s/][^>\x00]*href\s*="),
    hit("xss", "meta-refresh", r"<[\s/]*meta[\s/][^>\x00]*http-equiv"),
    hit("xss", "link-import", r"<[\s/]*link[\s/][^>\x00]*rel\s*=\s*['\"]?\s*import"),
    hit(
        "xss",
        "style-code",
        r"<[\s/]*style[^>\x00]*>[^<\x00]*(?:expression\s*\(|@import|javascript:|behavior\s*:|"
        r"-moz-binding)",
    ),
    hit(
        "xss",
        "style-code",
        r"\bstyle\s*=[^>\x00]*(?:expression\s*\(|javascript:|behavior\s*:|-moz-binding)",
    ),
    hit("xss", "math-href", r"<[\s/]*math\b[^\x00]*(?:\bhref\s*=|<\s*maction)"),
    hit("xss", "formaction", r"\bformaction\s*=|<[\s/]*form\b[^>\x00]*action\s*=\s*['\"]?\s*javas"),
    hit("xss", "srcdoc", r"\bsrcdoc\s*="),
    hit(
        "xss",
        "data-url",
        r"\bdata:\s*(?:text/(?:html|xml|javascript)|application/(?:x-)?(?:javascript|"
        r"xhtml\+xml|ecmascript)|image/svg\+xml[^,\x00]*,[^\x00\"']*<)",
    ),
    hit(
        "xss",
        "js-breakout",
        r"['\"`][\s;)]*[;+\-*|&,][\s]*(?:alert|prompt|confirm|eval|settimeout|setinterval|"
        r"fetch|document\.write|(?:window|document|top|self)\.location)\s*[(`=]",
    ),
    hit("xss", "js-breakout", r"</(?:script|title|textarea|style|noscript)\s*>[^\x00<]*<"),
    hit("xss", "js-breakout", r"(?:^|\x00)\s*[-+*/|&;]\s*(?:alert|prompt|confirm)\s*[(`]"),
    hit("xss", "angular", r"\{\{[^}\x00]*constructor\s*\.\s*constructor\s*\("),
    hit("xss", "angular", r"\{\{[^}\x00]*\$on\.constructor\b"),
    hit("xss", "xmlns-script", r"<[a-z]+:script\b|\bxlink:href\s*=\s*['\"]?\s*(?:javas|data:)"),
    trigger("xss", Action.XSS, "tokenize", r"<[a-z!/?%]"),
    trigger(
        "xss",
        Action.XSS,
        "tokenize",
        r"['\"`][\s/]*(?:on[a-z]+|style|src|href|formaction|xmlns|srcdoc|background|action)\s*=",
    ),
)
