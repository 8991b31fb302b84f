"""The audit trail's hash chain: sequence numbers and links, checkpoint lines, file rotation."""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import re
import secrets
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TextIO

from guardrail_authz.keyed_hmac import hmac_sha256

log = logging.getLogger(__name__)

GENESIS = "0" * 64  # the `prev` of a chain's start checkpoint
ALG_SHA256 = "sha256"
ALG_HMAC = "hmac-sha256"
CHECKPOINT_EVERY = 10_000  # decision lines between periodic checkpoints
CHECKPOINT_SECONDS = 300.0  # or seconds, whichever comes first (checked when a batch is written)
DEFAULT_KEEP = 5  # rotated files kept: FILE.1 (newest) ... FILE.5
MIN_KEY_BYTES = 16
# Why a checkpoint was written. `rotate` ends a file, `continue` opens the next one.
REASONS = frozenset({"start", "periodic", "rotate", "continue", "stop"})
_KEY_ID_LABEL = b"guardrail-authz audit key id"
_SIZE = re.compile(r"(\d+)\s*([kmg]i?b?)?", re.IGNORECASE)
_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30}


def load_key(path: Path, what: str = "audit key") -> bytes:
    """The HMAC key in a file (surrounding whitespace ignored); ValueError naming the file."""
    try:
        key = path.read_bytes().strip()
    except OSError as exc:
        raise ValueError(f"cannot read {what} file {path}: {exc.strerror or exc}") from None
    if len(key) < MIN_KEY_BYTES:
        raise ValueError(f"{path}: the {what} needs {MIN_KEY_BYTES}+ bytes, got {len(key)}")
    return key


def key_id(key: bytes) -> str:
    """A name for a key that reveals nothing usable about it (written in checkpoints)."""
    return hmac.digest(key, _KEY_ID_LABEL, "sha256").hex()[:16]


def linker(key: bytes | None) -> Callable[[bytes], str]:
    """The function giving a line's link (hex SHA-256, or HMAC-SHA256 under `key`) from the
    line's bytes without its newline: the next line's `prev`."""
    if key is None:
        sha256 = hashlib.sha256
        return lambda data: sha256(data).hexdigest()
    return hmac_sha256(key)


def parse_size(text: str) -> int:
    """A byte count such as 1048576, 100M or 2GiB (binary units); ValueError when malformed."""
    m = _SIZE.fullmatch(text.strip())
    if m is None:
        raise ValueError(f"expected a size such as 104857600 or 100M, got {text!r}")
    return int(m.group(1)) * _UNITS[(m.group(2) or "")[:1].lower()]


class Chain:
    """One process's chain: every line gets `seq` (0, 1, 2, ...) and `prev`, the link of the
    line before it, as its first two fields; a line's link covers its exact bytes."""

    __slots__ = ("alg", "id", "key_id", "link", "prev", "records", "seq")

    def __init__(self, key: bytes | None = None, chain_id: str | None = None) -> None:
        self.id = chain_id or secrets.token_hex(8)
        self.link = linker(key)
        self.alg = ALG_SHA256 if key is None else ALG_HMAC
        self.key_id = None if key is None else key_id(key)
        self.seq = 0
        self.prev = GENESIS
        self.records = 0  # decision lines so far

    def seal(self, lines: list[str]) -> list[str]:
        """Chain rendered lines ('{...}\\n' each) in place: the two fields go first."""
        seq, prev, link = self.seq, self.prev, self.link
        for i, body in enumerate(lines):
            line = f'{{"seq":{seq},"prev":"{prev}",{body[1:]}'
            prev = link(line.encode()[:-1])
            seq += 1
            lines[i] = line
        self.seq, self.prev = seq, prev
        self.records += len(lines)
        return lines

    def checkpoint(self, reason: str, now: str) -> str:
        """A checkpoint line, chained: what a single file needs to be verified from it."""
        keyed = "" if self.key_id is None else f',"key":"{self.key_id}"'
        line = (
            f'{{"seq":{self.seq},"prev":"{self.prev}","time":"{now}","event":"checkpoint",'
            f'"chain":"{self.id}","reason":"{reason}","records":{self.records},'
            f'"alg":"{self.alg}"{keyed},"pid":{os.getpid()}}}\n'
        )
        self.prev = self.link(line.encode()[:-1])
        self.seq += 1
        log.info(  # an anchor outside the audit file: compare with `audit verify`
            "audit checkpoint %s: chain=%s seq=%d link=%s", reason, self.id, self.seq - 1, self.prev
        )
        return line


class ChainedOutput:
    """Where the audit lines go, chained: a file (rotated past `max_bytes`, reopened on demand)
    or standard output. Writes the start checkpoint at once, periodic ones between batches,
    rotate/continue around a file change and stop on close."""

    def __init__(
        self,
        path: Path | None,
        stamp: Callable[[float], str],
        *,
        key: bytes | None = None,
        max_bytes: int = 0,
        keep: int = DEFAULT_KEEP,
        checkpoint_every: int = CHECKPOINT_EVERY,
        checkpoint_seconds: float = CHECKPOINT_SECONDS,
    ) -> None:
        if keep < 1:
            raise ValueError(f"the audit log keeps 1 or more rotated files, not {keep}")
        self.path = path
        self.chain = Chain(key)
        self._stamp = stamp
        self._max = max(0, max_bytes) if path is not None else 0
        self._keep = keep
        self._every = checkpoint_every
        self._seconds = checkpoint_seconds
        self._rotate_at = self._max
        self._closed = False
        self._file: TextIO = sys.stdout
        if path is not None:
            self._file = self._open(path)
            if self._max and self._size() >= self._max:  # an earlier process's: no checkpoints
                size = self._size()
                self._file.close()
                self._shift_or_grow(path, size)
                self._file = self._open(path)
        self._since = time.monotonic()
        self._records_at = 0
        self._emit(self.chain.checkpoint("start", self._now()))

    def _now(self) -> str:
        return self._stamp(time.time())

    @staticmethod
    def _open(path: Path) -> TextIO:
        stream = path.open("a", encoding="utf-8", buffering=1 << 16)
        # A line cut by a crash must not run into our first one.
        if os.fstat(stream.fileno()).st_size > 0:
            with path.open("rb") as tail:
                tail.seek(-1, os.SEEK_END)
                if tail.read(1) != b"\n":
                    stream.write("\n")
        return stream

    def _size(self) -> int:
        return os.fstat(self._file.fileno()).st_size  # right after copytruncate as well

    def _emit(self, text: str) -> None:
        self._file.write(text)
        self._file.flush()

    def write(self, lines: list[str]) -> None:
        """Chain and write one batch of rendered lines; checkpoint and rotate when due."""
        chain = self.chain
        chain.seal(lines)
        since = chain.records - self._records_at
        if since >= self._every or (since and time.monotonic() - self._since >= self._seconds):
            lines.append(self._periodic())
        self._emit("".join(lines))
        if self._max and self._size() >= self._rotate_at:
            self._rotate()

    def _periodic(self) -> str:
        self._since = time.monotonic()
        self._records_at = self.chain.records
        return self.chain.checkpoint("periodic", self._now())

    def _rotate(self) -> None:
        if self.path is None:  # only files rotate
            return
        self._emit(self.chain.checkpoint("rotate", self._now()))
        size = self._size()
        self._file.close()
        self._shift_or_grow(self.path, size)
        self._file = self._open(self.path)
        self._emit(self.chain.checkpoint("continue", self._now()))

    def _shift_or_grow(self, path: Path, size: int) -> None:
        try:
            self._shift(path)
        except OSError:
            log.exception("audit log %s could not be rotated; writing on", path)
            self._rotate_at = size + self._max  # retry once it has grown as much again
        else:
            self._rotate_at = self._max

    def _shift(self, path: Path) -> None:
        """FILE.1 ... FILE.(keep-1) move up one (FILE.keep is replaced), FILE becomes FILE.1."""
        for n in range(self._keep - 1, 0, -1):
            older = path.with_name(f"{path.name}.{n}")
            if older.exists():
                older.replace(path.with_name(f"{path.name}.{n + 1}"))
        path.replace(path.with_name(f"{path.name}.1"))

    def reopen(self) -> None:
        """After an external rotation moved the file (logrotate without copytruncate, then
        SIGHUP): end the moved file with a rotate checkpoint, open FILE anew, continue there."""
        if self.path is None:
            return
        self._emit(self.chain.checkpoint("rotate", self._now()))
        self._file.close()
        self._file = self._open(self.path)
        self._emit(self.chain.checkpoint("continue", self._now()))

    def close(self) -> None:
        """Write the stop checkpoint (a cleanly closed chain) and close a file; once."""
        if self._closed:
            return
        self._closed = True
        self._emit(self.chain.checkpoint("stop", self._now()))
        if self.path is not None:
            self._file.close()
