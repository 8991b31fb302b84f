"""Hand-rolled protobuf encoding of allow CheckResponses: the hot path's answer in a few joins.

Byte-identical to serializing the same answer with the generated classes (to_check_response),
which tests/test_encode.py checks over the conformance corpus. Field numbers are Envoy's:
CheckResponse{status=1, ok_response=3, dynamic_metadata=4}; Struct{fields=1: map entry
{key=1, value=2}}; Value{string_value=3}; OkHttpResponse{headers=2, headers_to_remove=5,
response_headers_to_add=6, query_parameters_to_set=7, query_parameters_to_remove=8};
HeaderValueOption{header=1, append=2, append_action=3}; HeaderValue{key=1, value=2}.
"""

from __future__ import annotations

from guardrail_authz.engine.decision import DECISION_ID_HEADER, Decision

_SMALL = [bytes((n,)) for n in range(128)]
_MODE_SUFFIX = {
    "overwrite": b"\x18\x02",  # append_action = OVERWRITE_IF_EXISTS_OR_ADD
    "if_absent": b"\x18\x01",  # append_action = ADD_IF_ABSENT
    "append": b"\x12\x02\x08\x01",  # deprecated append = BoolValue(true): see response.py
}
_CACHE_LIMIT = 4096
# Encoded fields by value (bounded: cleared when full). Headers set from request values
# (ifAbsent/append) vary per call and may evict the static ones; correctness never depends
# on a hit.
_set_cache: dict[tuple[str, str, str], bytes] = {}
_response_cache: dict[tuple[str, str, str], bytes] = {}
_remove_cache: dict[str, bytes] = {}
_METADATA_KEY = b"\x0a\x0bdecision_id"  # the Struct map entry's key, field 1
_STATUS_OK = b"\x0a\x00"  # status {} (code 0), present as the generated classes write it


def _len(n: int) -> bytes:
    if n < 128:
        return _SMALL[n]
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _field(tag: bytes, payload: bytes) -> bytes:
    return tag + _len(len(payload)) + payload


def _option(name: str, value: str, mode: str) -> bytes:
    key = name.encode()
    val = value.encode()
    hv = b"\x0a" + _len(len(key)) + key
    if val:
        hv += b"\x12" + _len(len(val)) + val
    return _field(b"\x0a", hv) + _MODE_SUFFIX[mode]


def _cached(
    cache: dict[tuple[str, str, str], bytes], tag: bytes, item: tuple[str, str, str]
) -> bytes:
    """A HeaderValueOption as field `tag` of OkHttpResponse, from (or into) `cache`."""
    found = cache.get(item)
    if found is None:
        if len(cache) >= _CACHE_LIMIT:
            cache.clear()
        found = cache[item] = _field(tag, _option(*item))
    return found


def _removal(name: str) -> bytes:
    found = _remove_cache.get(name)
    if found is None:
        if len(_remove_cache) >= _CACHE_LIMIT:
            _remove_cache.clear()
        found = _remove_cache[name] = _field(b"\x2a", name.encode())
    return found


def encode_allow(d: Decision) -> bytes:
    """The serialized CheckResponse for an allow decision."""
    parts: list[bytes] = []
    for item in d.upstream_headers_set:
        if item[0] == DECISION_ID_HEADER:  # unique per decision: never cached
            parts.append(_field(b"\x12", _option(*item)))
        else:
            parts.append(_cached(_set_cache, b"\x12", item))
    for name in d.upstream_headers_remove:
        parts.append(_removal(name))
    for item in d.response_headers_add:
        parts.append(_cached(_response_cache, b"\x32", item))
    for key, value in d.query_set:
        k, v = key.encode(), value.encode()
        qp = b"\x0a" + _len(len(k)) + k
        if v:
            qp += b"\x12" + _len(len(v)) + v
        parts.append(_field(b"\x3a", qp))
    for name in d.query_remove:
        parts.append(_field(b"\x42", name.encode()))
    ok = b"".join(parts)
    did = d.decision_id.encode()
    wrapped = b"\x1a" + _len(len(did)) + did  # Value{string_value}
    entry = _METADATA_KEY + b"\x12" + _len(len(wrapped)) + wrapped
    struct = b"\x0a" + _len(len(entry)) + entry
    return _STATUS_OK + b"\x1a" + _len(len(ok)) + ok + b"\x22" + _len(len(struct)) + struct
