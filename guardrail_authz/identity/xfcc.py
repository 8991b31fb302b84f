"""x-forwarded-client-cert (XFCC), as Envoy writes it: elements separated by ',', each a
';'-separated list of Key=Value pairs (By, Hash, Cert, Chain, Subject, URI, DNS); a value
holding ',', ';' or '=' is double-quoted, with '\\"' for a quote inside it."""

from __future__ import annotations

MAX_LENGTH = 64 * 1024


def elements(value: str) -> list[list[tuple[str, str]]] | None:
    """Every element's (key, value) pairs, in order; None when the header is malformed."""
    if len(value) > MAX_LENGTH:
        return None
    out: list[list[tuple[str, str]]] = []
    pairs: list[tuple[str, str]] = []
    buf: list[str] = []
    key: str | None = None
    quoted = False
    i, n = 0, len(value)
    while i < n:
        ch = value[i]
        if quoted:
            if ch == "\\" and i + 1 < n:
                buf.append(value[i + 1])
                i += 2
                continue
            if ch == '"':
                quoted = False
            else:
                buf.append(ch)
        elif ch == '"' and key is not None and not buf:
            quoted = True
        elif ch == "=" and key is None:
            key = "".join(buf).strip()
            buf = []
        elif ch in ";,":
            if key is None:
                if "".join(buf).strip():
                    return None  # a pair without '='
            else:
                pairs.append((key, "".join(buf).strip()))
            key, buf = None, []
            if ch == ",":
                out.append(pairs)
                pairs = []
        else:
            buf.append(ch)
        i += 1
    if quoted:
        return None
    if key is not None:
        pairs.append((key, "".join(buf).strip()))
    elif "".join(buf).strip():
        return None
    out.append(pairs)
    return [p for p in out if p]


def client_uri(value: str) -> str | None:
    """The URI SAN (e.g. a SPIFFE id) of the client the nearest proxy saw: the first URI of
    the last element. None when there is none or the header is malformed."""
    parsed = elements(value)
    if not parsed:
        return None
    for key, item in parsed[-1]:
        if key.lower() == "uri" and item:
            return item
    return None
