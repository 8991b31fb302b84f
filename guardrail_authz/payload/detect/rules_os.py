"""Signatures for OS command injection and path traversal / local file inclusion.

Command injection needs a shell metacharacter (or `$(`, a backtick) right before a known
command used the way an attacker uses it (a path argument, a flag, the end of the value),
so prose such as "Tom & Jerry; cat lovers" or a markdown table `| id |` stays quiet.
"""

from __future__ import annotations

from guardrail_authz.payload.detect.base import Action, Rule, hit, trigger

_S = r"[\s+]"  # a '+' stands for a space (query strings)
_END = r"(?:\x00|$)"
_META = r"(?:[;&|\n\r]+|\$\()[\s+]*"  # what starts a new command (backticks: own rule)
_CHAIN = r"[;&|\n\r]+[\s+]*"  # the same without `$(`: "$(pwd)" and "$(ls)" are everyday shell
# Commands that say something on their own: an option, a metacharacter or the end follows.
_ALONE = (
    r"(?:id|whoami|uname|hostname|pwd|ifconfig|ipconfig|netstat|env|printenv|ls|dir|"
    r"systeminfo|tasklist|getuid|groups|lsb_release|net[\s+]+(?:user|localgroup))"
)
_ALONE_END = rf"(?:{_S}+-{{1,2}}[a-z]+|{_S}+/[a-z]+\b|{_S}*(?:[;&#`'\")]|{_END}))"
# Commands that read or change files: a path follows.
_FILES = (
    r"(?:cat|head|tail|more|less|type|nl|tac|od|xxd|strings|base64|grep|egrep|awk|sed|find|"
    r"ls|dir|cp|mv|rm|chmod|chown|touch|mkdir|file|stat|tee|sort|uniq|wc|cut|rev|vi|vim|nano|"
    r"dd|tar|zip|unzip|gzip|echo|printf|source|sh|bash|python[23]?|perl|ruby|php|node|ln|"
    r"readlink|curl|wget)"
)
_PATH_ARG = (
    rf"(?:{_S}+(?:-[\w-]+(?:{_S}+\d+)?{_S}+)*|{_S}*<{_S}*)['\"]?(?:/|~|\.{{1,2}}/|\$|\\|[a-z]:\\)"
)
_BIN = r"(?:(?:/usr(?:/local)?)?/s?bin/)"
# What attackers run inside `$(...)` and backticks; not what scripts routinely substitute
# ("$(pwd)", "$(date +%F)", "`ls`").
_PROBE = (
    r"(?:id|whoami|uname|hostname|ifconfig|ipconfig|netstat|printenv|curl|wget|nc|ncat|netcat|"
    r"telnet|ping|nslookup|dig|sleep|bash|sh|zsh|python[23]?|perl|ruby|php|systeminfo|tasklist|"
    r"powershell|cmd|certutil|bitsadmin|getuid)"
)

CMDI: tuple[Rule, ...] = (
    hit("cmdi", "chained-command", rf"{_CHAIN}{_ALONE}{_ALONE_END}"),
    hit("cmdi", "chained-command", rf"{_META}{_FILES}{_PATH_ARG}"),
    hit(
        "cmdi",
        "chained-command",
        rf"{_META}(?:curl|wget|fetch|lwp-download)(?:{_S}+-[\w-]+)*{_S}+['\"]?"
        r"(?:https?:|ftp:|//|\$|\d|[\w-]+(?:\.[\w-]+)+)",
    ),
    hit("cmdi", "chained-command", rf"{_META}(?:curl|wget)\b[^\x00;|&]*(?:https?|ftp)://"),
    hit(
        "cmdi",
        "chained-command",
        rf"{_META}net{_S}+(?:user|localgroup|group|share|view|use|start|stop){_S}",
    ),
    hit("cmdi", "chained-command", rf"{_META}{_BIN}(?:{_PROBE}|{_ALONE}|cat|[a-z]*[?*])\b"),
    hit(
        "cmdi",
        "chained-command",
        rf"{_META}(?:nc|ncat|netcat|telnet|socat)(?:{_S}+-[a-z]+)*{_S}+"
        rf"(?:[\w.-]+{_S}+\d{{2,5}}|-[ec]\b)",
    ),
    hit(
        "cmdi",
        "chained-command",
        rf"{_META}ping(?:{_S}+-[a-z]+(?:{_S}+\d+)?)*{_S}+"
        r"(?:-[cnlwi]\b|\d{1,3}(?:\.\d{1,3}){3}|[\w-]+\.[\w.-]+|\$)",
    ),
    hit(
        "cmdi",
        "chained-command",
        rf"{_META}(?:nslookup|dig|host|traceroute|tracert){_S}+[\w$.-]+\.",
    ),
    hit("cmdi", "chained-command", rf"{_META}(?:python[23]?|perl|ruby|php|node|lua){_S}+-[ecr]\b"),
    hit("cmdi", "chained-command", rf"{_META}(?:ba|z|k|da|c|tc)?sh{_S}+-[ic]\b"),
    hit(
        "cmdi",
        "chained-command",
        rf"{_META}(?:sleep|timeout{_S}+/t){_S}+\d+{_S}*(?:[;&|#`)'\"]|{_END})",
    ),
    hit(
        "cmdi",
        "chained-command",
        rf"{_META}(?:(?:useradd|adduser|chpasswd|visudo|mkfifo){_S}+-?[\w/]|"
        rf"crontab{_S}+(?:-[rl]\b|/|-{_S}*{_END}))",
    ),
    hit("cmdi", "subshell", rf"(?:\$|<|>)\([\s+`]*{_BIN}?{_PROBE}\b"),
    hit("cmdi", "subshell", rf"(?:\$|<|>)\([\s+`]*{_BIN}?(?:cat|head|tail|base64){_PATH_ARG}"),
    # Pipes glued to a command with no spaces ("|id|", "a|id|"); "| id |" is a markdown table.
    hit("cmdi", "chained-command", rf"\|{_ALONE}\|[\s;&]*{_END}"),
    hit(
        "cmdi",
        "chained-command",
        rf"{_META}(?:echo|printf)\b[^\x00;|&]*>{{1,2}}\s*['\"]?(?:/|~|\.{{1,2}}/|[a-z]:\\)",
    ),
    hit("cmdi", "chained-command", rf"\|{_S}*base64{_S}+-(?:d|-decode)\b"),
    hit("cmdi", "ssi", r"<!--\s*#\s*(?:exec|include|echo|config|fsize|flastmod)\s+\w+\s*="),
    hit(
        "cmdi",
        "code-exec",
        rf"(?:{_META}|<\?(?:php|=)?[^\x00]*?)(?:system|exec|passthru|shell_exec|popen|proc_open|"
        r"pcntl_exec|eval|assert)\s*\(",
    ),
    # A backtick substitution at the start, after a metacharacter or glued to a word; not a
    # markdown code span in prose ("run `ls -la` to see them").
    hit(
        "cmdi",
        "backtick",
        rf"(?:^|\x00|[;&|=\w'\"])`{_S}*{_BIN}?{_PROBE}\b[^`\x00]*`|"
        rf"`{_S}*{_BIN}?{_PROBE}\b[^`\x00]*`\.?\w",
    ),
    hit("cmdi", "ifs", r"\$\{IFS\}|\$IFS\b"),
    hit(
        "cmdi",
        "brace-expansion",
        r"\{(?:cat|ls|id|wget|curl|nc|bash|sh|echo|ping|rm|cp|whoami|uname|python[23]?|perl|"
        r"nslookup|head|tail),[^}\x00]+\}",
    ),
    hit(
        "cmdi",
        "glob-path",
        rf"(?:^|\x00|[\s;|&=`'\"(<>])/(?:[a-z?*]+/)+[a-z*]*\?[a-z?*]*(?:[\s;|&'\"`)]|{_END})",
    ),
    hit(
        "cmdi",
        "reverse-shell",
        r"/dev/(?:tcp|udp)/[\w.-]+/\d+|>&\s*/dev/|\bmkfifo\b[^\x00]*/tmp/|"
        r"\b(?:nc|ncat|netcat)\b[^\x00;|]*\s-[ec]\s+/|\bsocat\b[^\x00]*\bexec:|"
        r"0<&\d+\s*;",
    ),
    hit("cmdi", "reverse-shell", rf"(?:{_META}|-e{_S}+)/bin/(?:ba|z|k|da|c|tc)?sh\b"),
    hit("cmdi", "reverse-shell", r"/bin/(?:ba|z|k|da)?sh\s+-[ic]\b"),
    hit("cmdi", "download-exec", r"\b(?:curl|wget)\b[^\x00|;]+\|\s*(?:sudo\s+)?(?:ba|z)?sh\b"),
    hit("cmdi", "windows-cmd", r"\bcmd(?:\.exe)?[\s+]+/[ckr]\b"),
    hit(
        "cmdi",
        "powershell",
        r"\b(?:powershell|pwsh)(?:\.exe)?[\s+]+-(?:e|ec|enc|encodedcommand|c|command|nop|noprofile|"
        r"w|windowstyle|ep|exec|executionpolicy|noni|noninteractive)\b",
    ),
    hit(
        "cmdi",
        "powershell",
        r"\biex[\s+]*\(|\binvoke-(?:expression|webrequest|restmethod)\b|"
        r"new-object[\s+]+(?:-typename[\s+]+)?(?:system\.)?net\.webclient|"
        r"\.download(?:string|file|data)[\s+]*\(",
    ),
    hit(
        "cmdi",
        "lolbin",
        r"\bcertutil(?:\.exe)?[\s+]+-(?:urlcache|decode|encode)|\bbitsadmin(?:\.exe)?[\s+]+/transfer|"
        r"\bmshta(?:\.exe)?[\s+]+(?:https?:|vbscript:|javascript:)|\bregsvr32(?:\.exe)?[\s+]+/s\b|"
        r"\brundll32(?:\.exe)?[\s+]+[\w\\/.:]+\.dll|\bwmic(?:\.exe)?[\s+]+(?:process|os)\b",
    ),
    # Quote and backslash splitting (c'a't, w"h"oami, c\at) after a metacharacter: scan the
    # value once more with the shell's quoting removed.
    trigger(
        "cmdi",
        Action.SHELL,
        "dequote",
        rf"(?:[;&|\n`]|\$\(){_S}*[a-z]*(?:''|\"\"|\\[a-z]|'[a-z]+'|\"[a-z]+\"|\$@)",
    ),
)

# What a traversal reaches for. Strong targets count after one "../"; the weak ones (also
# found in ordinary relative paths of a project) after two.
_STRONG_TARGETS = (
    r"(?:etc[/\\]|proc[/\\]|windows\b|winnt\b|(?:boot|win|system)\.ini|\.env\b|\.git[/\\]|"
    r"\.svn[/\\]|\.ssh[/\\]|\.aws[/\\]|\.htpasswd|web-inf|meta-inf|wp-config|"
    r"id_(?:rsa|dsa|ecdsa|ed25519)|shadow|passwd|var[/\\](?:log|run)|root[/\\]|system32|"
    r"inetpub|boot[/\\]|dev[/\\])"
)
_WEAK_TARGETS = (
    r"(?:\.docker[/\\]|\.kube[/\\]|\.htaccess|\.bash_history|\.npmrc|\.pgpass|web\.config|"
    r"config\.(?:php|inc|json|ya?ml|xml)|settings\.py|appsettings|application\.(?:properties|ya?ml)|"
    r"database\.yml|credentials|var[/\\](?:www|lib)|home[/\\]|usr[/\\]|tmp[/\\]|php\.ini|my\.cnf)"
)
_START = r"(?:^|\x00|=|file:/*)\s*"

TRAVERSAL: tuple[Rule, ...] = (
    hit("traversal", "dotdot", r"(?:\.{2,};?[/\\]+){3}"),
    hit("traversal", "dotdot", rf"\.{{2,}};?[/\\]+(?:[\w.-]*[/\\]+)*{_STRONG_TARGETS}"),
    hit(
        "traversal",
        "dotdot",
        rf"\.{{2,}};?[/\\]+(?:[\w.-]*[/\\]+)*\.{{2,}};?[/\\]+(?:[\w.-]*[/\\]+)*{_WEAK_TARGETS}",
    ),
    hit("traversal", "dotdot-evasion", r"\.{4}[/\\]|\.\.;[/\\]|\.\.[/\\]{2}\.|\.\.\\/|\.\./\\"),
    hit(
        "traversal",
        "encoded-dotdot",
        r"(?:%(?:25)*2e){2}|\.\.(?:%(?:25)*(?:2f|5c)|%c0%af|%c1%9c|%e0%80%af)|%c0%ae%c0%ae|"
        r"%uff0e%uff0e|%u002e%u002e|\.\.(?:0x2f|0x5c)",
    ),
    hit(
        "traversal",
        "sensitive-file",
        r"/etc/(?:passwd|shadow|sudoers|master\.passwd|gshadow)\b|"
        r"/proc/(?:self|\d+|thread-self)/(?:environ|cmdline|maps|mem|fd/|status|exe|cwd|root|"
        r"mountinfo)|\b(?:win|system|boot)\.ini\b|"
        r"[a-z]:[/\\]+(?:windows|winnt)[/\\]+(?:win\.ini|system32|repair|system\.ini)|"
        r"[/\\]\.ssh[/\\]+(?:id_[a-z0-9]+|authorized_keys)|\.aws[/\\]+credentials|"
        r"/var/run/secrets/kubernetes\.io|web-inf[/\\]+web\.xml|[/\\]\.htpasswd\b|"
        r"/root/\.(?:bash_history|ssh)",
    ),
    hit(
        "traversal",
        "absolute-path",
        rf"{_START}/+(?:etc/(?:hosts|issue|hostname|group|resolv\.conf|crontab|fstab|mtab|motd|"
        r"profile|bashrc|environment|os-release|nginx/|apache2?/|httpd/|mysql/|php|ssh/|ssl/|"
        r"security/)|proc/(?:version|cpuinfo|meminfo|mounts|net/|self\b|\d+/)|root/|var/log/|"
        r"home/[\w.-]+/\.|usr/local/etc/|dev/(?:tcp|udp|shm|mem|kmem)\b)|"
        rf"{_START}~/\.(?:bash_history|zsh_history|ssh/|aws/|kube/|docker/|netrc|pgpass|"
        r"git-credentials|bashrc|profile)",
    ),
    hit(
        "traversal",
        "absolute-path",
        rf"{_START}[a-z]:[/\\]+(?:windows|winnt|inetpub|boot\.ini|users[/\\]+[^/\\\x00]+[/\\]+"
        r"(?:ntuser|appdata))|\\\\[\w.-]+\\(?:c|admin|ipc)\$",
    ),
    hit(
        "traversal",
        "php-wrapper",
        r"\b(?:php|phar|zip|expect|glob|compress\.zlib|compress\.bzip2|zlib|rar|ogg|data)://",
    ),
    hit("traversal", "file-url", r"(?:^|\x00|=)\s*file:(?:/|\\)"),
    hit("traversal", "null-byte", r"[\w/\\]%00+\.?[a-z0-9]{1,5}\b"),
)
