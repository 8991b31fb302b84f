"""SSRF: classify where a URL-valued string points (scheme, host name, IP in any encoding).

A value counts as a URL when it starts with a scheme (`http://`, `gopher:`...) or with `//`;
a URL inside its query (`?next=http://127.0.0.1/`) is checked too. Flagged: schemes that
reach more than HTTP whatever the host (file, gopher, dict, ldap, jar, netdoc, php, phar,
tftp, smb, ...; ftp, sftp and telnet only by their host), loopback (127.0.0.0/8, ::1,
localhost, *.localhost, names that publicly resolve to loopback), unspecified 0.0.0.0/8 and
::, link-local (169.254.0.0/16, fe80::/10), cloud metadata addresses and names, the
Kubernetes API service name, IPv4 written as one integer or in hex or octal (any address:
nobody writes a public one like that), IPv4 embedded in IPv6 (mapped, compatible, NAT64,
6to4) or in wildcard-DNS names (127.0.0.1.nip.io), and private address literals (10/8,
172.16/12, 192.168/16, 100.64/10, fc00::/7): a URL that a client hands over in a payload
has no business naming an internal address, even though services inside the mesh call
such addresses all the time (their own traffic is not a URL inside a payload). Every
reading of the authority that some parser makes (`a@b`, `a#@b`, `a\\@b`) is checked, so
parser differentials do not slip by. A bare value (no scheme, no `//`) is flagged only as
`host:port` naming loopback, link-local or metadata, or when it names metadata alone
(`0.0.0.0:8080` and `10.0.0.7:5432` are how configuration says "listen" and "connect").
"""

from __future__ import annotations

import ipaddress
import re
from urllib.parse import unquote

DANGEROUS_SCHEMES = frozenset(
    (
        *("file", "gopher", "dict", "tftp", "ldap", "ldaps", "ldapi", "jar", "netdoc", "php"),
        *("phar", "expect", "smb", "rmi", "iiop", "glob", "ogg", "jndi"),
    )
)
_SPECIAL = frozenset(("http", "https", "ws", "wss"))
LOOPBACK_NAMES = frozenset(
    (
        *("localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback"),
        *("localtest.me", "lvh.me", "vcap.me"),
    )
)
_LOOPBACK_SUFFIXES = (".localhost", ".localtest.me", ".lvh.me", ".vcap.me")
METADATA_NAMES = frozenset(
    (
        "metadata",
        "metadata.google.internal",
        "metadata.goog",
        "instance-data",
        "instance-data.ec2.internal",
        "metadata.azure.com",
        "metadata.azure.internal",
        "metadata.tencentyun.com",
        "metadata.packet.net",
    )
)
METADATA_V4 = frozenset(
    int(ipaddress.IPv4Address(a))
    for a in ("169.254.169.254", "169.254.170.2", "100.100.100.200", "168.63.129.16", "192.0.0.192")
)
METADATA_V6 = frozenset((int(ipaddress.IPv6Address("fd00:ec2::254")),))
CLUSTER_NAMES = frozenset(
    (
        *("kubernetes", "kubernetes.default", "kubernetes.default.svc"),
        "kubernetes.default.svc.cluster.local",
    )
)
_PRIVATE_V4 = tuple(
    (int(net.network_address), int(net.netmask))
    for net in map(
        ipaddress.IPv4Network, ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10")
    )
)
_WILDCARD_DNS = (".nip.io", ".sslip.io", ".xip.io")
_NESTED = re.compile(
    r"(?:[=?&/]|%3d)((?:https?|gopher|file|dict|ftps?|ldaps?|jar|php|tftp)(?::|%3a)(?://|%2f%2f)"
    r"[^&\s]*)"
)
_SCHEME = re.compile(r"([a-z][a-z0-9+.\-]*):")
_EMBEDDED = re.compile(r"(\d{1,3}[.-]\d{1,3}[.-]\d{1,3}[.-]\d{1,3}|[0-9a-f]{8})$")
_BARE_ALONE = frozenset(("ssrf.metadata",))
_BARE_WITH_PORT = frozenset(("ssrf.metadata", "ssrf.loopback", "ssrf.link-local"))
_STRIP = str.maketrans("", "", "\t\r\n")
MAX_URL = 4096


def classify_url(text: str) -> str | None:
    """The SSRF signature for a URL-valued string, or None when it points nowhere special."""
    s = text[:MAX_URL].strip().translate(_STRIP).lower()
    m = _SCHEME.match(s)
    if m is not None:
        scheme, rest = m.group(1), s[m.end() :]
        if scheme in DANGEROUS_SCHEMES:
            return "ssrf.scheme" if rest and not rest[0].isspace() else None
        if rest.startswith(("//", "\\\\", "/\\", "\\/")):
            return _authority(rest.lstrip("/\\")) or _nested(rest)
        if scheme in _SPECIAL and rest and rest[0] not in " /":
            return _authority(rest)  # http:host is http://host to a browser
        return None
    if s.startswith(("//", "\\\\")):
        return _authority(s.lstrip("/\\")) or _nested(s)
    return _bare(s)


def _nested(url: str) -> str | None:
    """A URL carried in another URL's path or query (open-redirect chains)."""
    for m in _NESTED.finditer(url, 2):
        inner = unquote(m.group(1))
        if inner != url:
            found = classify_url(inner)
            if found is not None:
                return found
    return None


def _authority(rest: str) -> str | None:
    end = len(rest)
    for ch in "/?#\\":
        i = rest.find(ch)
        if 0 <= i < end:
            end = i
    strict = rest[:end]
    slash = rest.find("/")
    lenient = rest if slash < 0 else rest[:slash]
    candidates = {strict.rpartition("@")[2], lenient.rpartition("@")[2]}
    candidates.update(strict.split("@")[:-1])  # userinfo that some parsers take as the host
    for auth in candidates:
        found = classify_host(_without_port(auth))
        if found is not None:
            return found
    return None


def _bare(s: str) -> str | None:
    host = _without_port(s)
    # Without a port only a metadata name or address is worth a finding; with one, a
    # loopback, link-local or metadata target (0.0.0.0:8080 is how servers say "listen").
    wanted = _BARE_WITH_PORT if host != s else _BARE_ALONE
    found = classify_host(host, flag_encoded=False)
    return found if found in wanted else None


def _without_port(auth: str) -> str:
    if auth.startswith("["):
        close = auth.find("]")
        return auth if close < 0 else auth[: close + 1]
    host, sep, port = auth.rpartition(":")
    if sep and (port.isdigit() or not port) and ":" not in host:
        return host
    return auth


def classify_host(host: str, *, flag_encoded: bool = True) -> str | None:
    """The SSRF signature for a host name or address literal, or None.

    flag_encoded: whether an IPv4 written in hex, octal or fewer parts is a finding by itself.
    """
    h = unquote(host).strip().rstrip(".")
    if not h:
        return None
    if h.startswith("[") and h.endswith("]"):
        return _classify_v6(h[1:-1])
    if h in LOOPBACK_NAMES or h.endswith(_LOOPBACK_SUFFIXES):
        return "ssrf.loopback"
    if h in METADATA_NAMES:
        return "ssrf.metadata"
    if h in CLUSTER_NAMES:
        return "ssrf.cluster-api"
    if h.endswith(_WILDCARD_DNS):
        m = _EMBEDDED.search(h.rsplit(".", 2)[0])
        if m is not None:
            inner = m.group(1).replace("-", ".")
            value = int(inner, 16) if "." not in inner else parse_ipv4(inner)
            return _classify_v4(value, canonical=True) if value is not None else None
    parsed = parse_ipv4_loose(h)
    if parsed is not None:
        return _classify_v4(parsed[0], canonical=parsed[1] or not flag_encoded)
    if ":" in h:
        return _classify_v6(h)
    return None


def parse_ipv4(text: str) -> int | None:
    """A dotted-quad IPv4 address in plain decimal, as an integer."""
    parsed = parse_ipv4_loose(text)
    return parsed[0] if parsed is not None and parsed[1] else None


def parse_ipv4_loose(text: str) -> tuple[int, bool] | None:
    """IPv4 the way URL parsers read it (1 to 4 parts, each decimal, 0x-hex or 0-octal).

    Returns the address and whether it was written canonically (four plain decimal parts).
    """
    parts = text.split(".")
    if len(parts) > 1 and parts[-1] == "":
        parts.pop()
    if not 1 <= len(parts) <= 4:
        return None
    numbers: list[int] = []
    canonical = len(parts) == 4
    for part in parts:
        if part[:2] in ("0x", "0X"):
            digits, base, canonical = part[2:] or "0", 16, False
        elif len(part) > 1 and part.startswith("0"):
            digits, base, canonical = part[1:], 8, False
        else:
            digits, base = part, 10
        if not digits or len(digits) > 12 or not digits.isascii() or not digits.isalnum():
            return None
        try:
            numbers.append(int(digits, base))
        except ValueError:
            return None
    *head, last = numbers
    if any(n > 255 for n in head) or last >= 256 ** (5 - len(numbers)):
        return None
    value = last
    for i, n in enumerate(head):
        value += n << (8 * (3 - i))
    return value, canonical


def _classify_v4(value: int, canonical: bool) -> str | None:
    first = value >> 24
    if first == 127:
        found: str | None = "ssrf.loopback"
    elif first == 0:
        found = "ssrf.unspecified"
    elif value in METADATA_V4:
        found = "ssrf.metadata"
    elif value >> 16 == 0xA9FE:
        found = "ssrf.link-local"
    elif any(value & mask == net for net, mask in _PRIVATE_V4):
        found = "ssrf.private"
    else:
        found = None
    if not canonical:
        return "ssrf.encoded-ip"  # also a public address: nobody writes one like that
    return found


def _classify_v6(text: str) -> str | None:
    try:
        addr = ipaddress.IPv6Address(text.split("%", 1)[0])
    except ValueError:
        return None
    value = int(addr)
    if addr.is_loopback:
        return "ssrf.loopback"
    if addr.is_unspecified:
        return "ssrf.unspecified"
    if value in METADATA_V6:
        return "ssrf.metadata"
    if addr.is_link_local:
        return "ssrf.link-local"
    if value >> 121 == 0x7E:  # fc00::/7, unique local
        return "ssrf.private"
    embedded: int | None = None
    if addr.ipv4_mapped is not None:
        embedded = int(addr.ipv4_mapped)
    elif value >> 32 == 0 or value >> 32 == 0x0064FF9B << 64:  # IPv4-compatible, NAT64
        embedded = value & 0xFFFFFFFF
    elif addr.sixtofour is not None:
        embedded = int(addr.sixtofour)
    if embedded is None:
        return None
    return _classify_v4(embedded, canonical=True)
