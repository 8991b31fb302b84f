"""Policy bundles: a deterministic tar.gz of a policy directory with a manifest, opened safely."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import re
import tarfile
import tempfile
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal, NoReturn

from guardrail_authz.policy.compile import load_directory
from guardrail_authz.policy.errors import ErrorSink, PolicyError, PolicyLoadError
from guardrail_authz.policy.names import API_VERSION
from guardrail_authz.policy.names import NAME as _NAME
from guardrail_authz.policy.reader import Reader
from guardrail_authz.policy.snapshot import PolicySnapshot
from guardrail_authz.policy.yamlsrc import load_documents

KIND = "PolicyBundle"
MANIFEST = "manifest.yaml"
BUNDLE_SUFFIXES = (".tar.gz", ".tgz")
MAX_MEMBERS = 1000  # the manifest included
MAX_MEMBER_BYTES = 16 * 1024 * 1024
MAX_TOTAL_BYTES = 64 * 1024 * 1024  # uncompressed member data; also caps the archive file
MAX_MANIFEST_BYTES = 1024 * 1024
# Headers, padding and pax records around the members' data: the decompressed stream is cut
# beyond members + this, whatever the headers claim (a gzip bomb is stopped while reading).
_STREAM_SLACK = MAX_MEMBERS * 4 * 512 + MAX_MANIFEST_BYTES
_CHUNK = 64 * 1024
_VERSION = re.compile(r"^[\x21-\x7e]{1,128}$")  # printable ASCII, no whitespace
_MEMBER = re.compile(r"^[A-Za-z0-9_-][A-Za-z0-9._-]{0,252}$")  # a ConfigMap key, not hidden
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_REGULAR = (tarfile.REGTYPE, tarfile.AREGTYPE)


@dataclass(frozen=True, slots=True)
class BundleInfo:
    """What a bundle is: its manifest's name and version, archive digest and member files."""

    name: str
    version: str
    sha256: str  # of the archive bytes
    files: tuple[str, ...]  # listed members, manifest excluded, in manifest order
    path: str


@dataclass(frozen=True, slots=True)
class SourceInfo:
    """Where a policy snapshot came from: a directory or a bundle."""

    kind: Literal["directory", "bundle"]
    path: str
    bundle: BundleInfo | None = None


@dataclass(frozen=True, slots=True)
class _Entry:
    path: str
    sha256: str
    size: int


@dataclass(frozen=True, slots=True)
class _Manifest:
    name: str
    version: str
    files: tuple[_Entry, ...]


class _TooBigError(Exception):
    """The decompressed stream went past its cap."""


class _Capped(io.RawIOBase):
    """A reader that counts the bytes it really delivers and stops past a limit."""

    def __init__(self, inner: gzip.GzipFile, limit: int) -> None:
        super().__init__()
        self._inner = inner
        self._limit = limit
        self.count = 0

    def readable(self) -> bool:
        """Always readable."""
        return True

    def readinto(self, buffer: Any) -> int:
        """Fill buffer from the inner stream, raising _TooBigError once past the limit."""
        view = memoryview(buffer).cast("B")
        chunk = self._inner.read(min(len(view), self._limit - self.count + 1))
        self.count += len(chunk)
        if self.count > self._limit:
            raise _TooBigError
        view[: len(chunk)] = chunk
        return len(chunk)


def _fail(file: str, code: str, field: str, message: str, line: int = 0) -> NoReturn:
    raise PolicyLoadError([PolicyError(file, line, field, code, message)])


def label_errors(name: str, version: str) -> list[str]:
    """Problems with a bundle name or version (empty when both are valid)."""
    out = []
    if not _NAME.match(name):
        out.append(f"name {name!r}: lowercase letters, digits, '-', '.', '_' (max 63)")
    if not _VERSION.match(version):
        out.append(f"version {version!r}: 1 to 128 printable characters, no whitespace")
    return out


def member_problem(name: str) -> tuple[str, str] | None:
    """Why a name cannot be a bundle member, as (code, message), or None."""
    if name.startswith("/"):
        return "bundle.absolute", "absolute member names are refused"
    if ".." in name.split("/"):
        return "bundle.traversal", "'..' in a member name is refused"
    if "/" in name:
        return "bundle.nested", "a bundle is flat like a ConfigMap: no subdirectories"
    if not _MEMBER.match(name):
        return "bundle.name", "member names are ConfigMap keys: A-Z a-z 0-9 - _ . (not first)"
    return None


# --- build -------------------------------------------------------------------------------


def build_bundle(directory: Path, out: Path, *, name: str, version: str) -> BundleInfo:
    """Pack every visible regular file of a directory, byte-for-byte reproducibly, into `out`."""
    where = str(directory)
    problems = label_errors(name, version)
    if problems:
        raise PolicyLoadError(
            [PolicyError(str(out), 0, "metadata", "bundle.metadata", p) for p in problems]
        )
    if not directory.is_dir():
        _fail(where, "bundle.source", "", "not a directory")
    files = _collect(directory, out)
    lines = [
        f"apiVersion: {API_VERSION}",
        f"kind: {KIND}",
        f"metadata: {{name: {json.dumps(name)}, version: {json.dumps(version)}}}",
        "spec:",
        "  files:",
    ]
    for member, data in files:
        digest = hashlib.sha256(data).hexdigest()
        lines.append(
            f'    - {{path: {json.dumps(member)}, sha256: "{digest}", bytes: {len(data)}}}'
        )
    manifest = ("\n".join(lines) + "\n").encode()
    raw = io.BytesIO()
    with (
        gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as gz,
        tarfile.open(fileobj=gz, mode="w", format=tarfile.PAX_FORMAT) as tar,
    ):
        for member, data in [(MANIFEST, manifest), *files]:
            info = tarfile.TarInfo(member)
            info.size, info.mtime, info.mode, info.type = len(data), 0, 0o644, tarfile.REGTYPE
            info.uid, info.gid, info.uname, info.gname = 0, 0, "", ""
            tar.addfile(info, io.BytesIO(data))
    archive = raw.getvalue()
    _write_atomically(out, archive)
    names = tuple(member for member, _ in files)
    return BundleInfo(name, version, hashlib.sha256(archive).hexdigest(), names, str(out))


def _collect(directory: Path, out: Path) -> list[tuple[str, bytes]]:
    """(name, content) of the files to pack, sorted; symlinks followed, hidden names skipped."""
    sink = ErrorSink()
    where = str(directory)
    target = out.resolve()
    files: list[tuple[str, bytes]] = []
    total = 0
    for path in sorted(directory.iterdir(), key=lambda p: p.name):
        if path.name.startswith(".") or not path.is_file() or path.resolve() == target:
            continue
        problem = member_problem(path.name)
        if problem is not None or path.name == MANIFEST:
            code, msg = problem or ("bundle.name", "manifest.yaml is the bundle's own manifest")
            sink.add(code, msg, where, 0, path.name)
            continue
        try:
            data = path.read_bytes()
        except OSError as exc:
            sink.add("bundle.read", f"cannot read: {exc.strerror}", where, 0, path.name)
            continue
        if len(data) > MAX_MEMBER_BYTES:
            sink.add("bundle.too_large", f"over {MAX_MEMBER_BYTES} bytes", where, 0, path.name)
        total += len(data)
        files.append((path.name, data))
    if not files and not sink:
        sink.add("bundle.empty", "no file to pack", where)
    if len(files) > MAX_MEMBERS - 1:
        sink.add("bundle.too_many", f"more than {MAX_MEMBERS - 1} files", where)
    if total > MAX_TOTAL_BYTES:
        sink.add("bundle.too_large", f"more than {MAX_TOTAL_BYTES} bytes in all", where)
    if sink:
        raise PolicyLoadError(sink.sorted(), sink.dropped)
    return files


def _write_atomically(out: Path, data: bytes) -> None:
    """Write beside the target and rename over it, so a watcher never sees half an archive."""
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", dir=out.parent)
    except OSError as exc:
        _fail(str(out), "bundle.write", "", f"cannot write: {exc.strerror}")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        Path(tmp).chmod(0o644)
        Path(tmp).replace(out)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        _fail(str(out), "bundle.write", "", f"cannot write: {exc.strerror}")


# --- open ----------------------------------------------------------------------------------


def open_bundle(path: Path, dest: Path) -> BundleInfo:
    """Verify a bundle and extract its listed files into `dest`, an empty existing directory."""
    return _extract(_read_archive(path), path.name, str(path), dest)


def _read_archive(path: Path) -> bytes:
    try:
        with path.open("rb") as f:
            data = f.read(MAX_TOTAL_BYTES + 1)
    except OSError as exc:
        _fail(path.name, "bundle.read", "", f"cannot read {path}: {exc.strerror}")
    if len(data) > MAX_TOTAL_BYTES:
        _fail(path.name, "bundle.too_large", "", f"archive over {MAX_TOTAL_BYTES} bytes")
    return data


def _extract(data: bytes, label: str, path: str, dest: Path) -> BundleInfo:
    if not dest.is_dir() or any(dest.iterdir()):
        _fail(label, "bundle.dest", str(dest), "extract into an empty existing directory")
    written: list[Path] = []
    try:
        manifest = _unpack(data, label, dest, written)
    except BaseException:
        for done in written:
            done.unlink(missing_ok=True)
        raise
    files = tuple(e.path for e in manifest.files)
    return BundleInfo(
        manifest.name, manifest.version, hashlib.sha256(data).hexdigest(), files, path
    )


def _unpack(data: bytes, label: str, dest: Path, written: list[Path]) -> _Manifest:
    if data[:2] != b"\x1f\x8b":
        _fail(label, "bundle.format", "", "not a gzip file (expected a .tar.gz bundle)")
    limit = MAX_TOTAL_BYTES + _STREAM_SLACK
    stream = _Capped(gzip.GzipFile(fileobj=io.BytesIO(data), mode="rb"), limit)
    try:
        with tarfile.open(fileobj=stream, mode="r|") as tar:
            return _members(tar, label, dest, written)
    except _TooBigError:
        _fail(label, "bundle.too_large", "", f"over {limit} bytes of decompressed data")
    except (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile) as exc:
        _fail(label, "bundle.format", "", f"not a readable tar.gz: {exc}")


def _members(tar: tarfile.TarFile, label: str, dest: Path, written: list[Path]) -> _Manifest:
    first = tar.next()
    if first is None or first.name != MANIFEST:
        got = f"got {first.name!r}" if first else "the archive is empty"
        _fail(label, "bundle.manifest", MANIFEST, f"the first member must be {MANIFEST}; {got}")
    _check_member(first, label, MAX_MANIFEST_BYTES)
    manifest = _parse_manifest(_read(tar, first, label), label)
    expected = {e.path: e for e in manifest.files}
    seen: set[str] = set()
    count = 1
    while (member := tar.next()) is not None:
        count += 1
        name = member.name
        if count > MAX_MEMBERS:
            _fail(label, "bundle.too_many", name, f"more than {MAX_MEMBERS} members")
        problem = member_problem(name)
        if problem is not None:
            _fail(label, problem[0], name, problem[1])
        if name in seen or name == MANIFEST:
            _fail(label, "bundle.duplicate", name, "the archive holds this member twice")
        _check_member(member, label, MAX_MEMBER_BYTES)
        entry = expected.get(name)
        if entry is None:
            _fail(label, "bundle.unlisted", name, f"member not listed in {MANIFEST}")
        if member.size != entry.size:
            msg = f"{member.size} bytes in the archive, {entry.size} in {MANIFEST}"
            _fail(label, "bundle.size", name, msg)
        seen.add(name)
        _copy(tar, member, entry, dest / name, label, written)
    missing = [e.path for e in manifest.files if e.path not in seen]
    if missing:
        msg = f"listed in {MANIFEST} but not in the archive"
        raise PolicyLoadError([PolicyError(label, 0, m, "bundle.missing", msg) for m in missing])
    return manifest


def _check_member(member: tarfile.TarInfo, label: str, max_bytes: int) -> None:
    """Only regular files, within the size cap."""
    name = member.name
    if member.issym() or member.islnk():
        _fail(label, "bundle.link", name, f"links are refused (to {member.linkname!r})")
    if member.ischr() or member.isblk():
        _fail(label, "bundle.device", name, "device files are refused")
    if member.type not in _REGULAR or member.issparse():
        _fail(label, "bundle.special", name, "only regular files are accepted")
    if member.size > max_bytes:
        _fail(label, "bundle.too_large", name, f"{member.size} bytes (max {max_bytes})")


def _read(tar: tarfile.TarFile, member: tarfile.TarInfo, label: str) -> bytes:
    src = tar.extractfile(member)  # reads at most member.size bytes, already capped
    data = src.read() if src is not None else b""
    if len(data) != member.size:
        _fail(label, "bundle.size", member.name, f"read {len(data)} of {member.size} bytes")
    return data


def _copy(
    tar: tarfile.TarFile,
    member: tarfile.TarInfo,
    entry: _Entry,
    target: Path,
    label: str,
    written: list[Path],
) -> None:
    """Stream one member to a new file, counting and hashing the bytes really read."""
    src = tar.extractfile(member)
    digest = hashlib.sha256()
    size = 0
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        fd = os.open(target, flags, 0o644)
        written.append(target)
        with os.fdopen(fd, "wb") as out:
            while src is not None and (chunk := src.read(_CHUNK)):
                size += len(chunk)
                if size > entry.size:
                    break
                digest.update(chunk)
                out.write(chunk)
    except OSError as exc:
        _fail(label, "bundle.write", member.name, f"cannot extract: {exc.strerror}")
    if size != entry.size:
        _fail(label, "bundle.size", member.name, f"read {size} bytes, {entry.size} listed")
    if digest.hexdigest() != entry.sha256:
        _fail(label, "bundle.digest", member.name, f"sha256 differs from {MANIFEST}")


def _parse_manifest(raw: bytes, label: str) -> _Manifest:
    """Read manifest.yaml; every mistake is reported with its line and field."""
    file = f"{label}:{MANIFEST}"
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        _fail(file, "bundle.manifest", "", f"not UTF-8: {exc.reason}")
    sink = ErrorSink()
    docs = load_documents(text, file, sink)
    if not sink and len(docs) != 1:
        sink.add("bundle.manifest", "must hold exactly one YAML document", file, 1)
    entries: list[_Entry] = []
    name = version = ""
    if not sink:
        doc, line = docs[0]
        r = Reader(doc, "", file, sink, line)
        r.only("apiVersion", "kind", "metadata", "spec")
        for key, want, code in (("apiVersion", API_VERSION, "api_version"), ("kind", KIND, "kind")):
            got = r.text(key, required=True)
            if got is not None and got != want:
                r.error(key, f"bundle.{code}", f"must be {want!r}, got {got!r}")
        meta = r.mapping("metadata", required=True)
        if meta is not None:
            meta.only("name", "version")
            name = meta.text("name", required=True) or ""
            version = meta.scalar_text("version", required=True) or ""
            if name and not _NAME.match(name):
                meta.error("name", "bundle.metadata", label_errors(name, "x")[0])
            if "version" in meta.data and not _VERSION.match(version):
                meta.error("version", "bundle.metadata", label_errors("x", version)[0])
        spec = r.mapping("spec", required=True)
        if spec is not None:
            spec.only("files")
            entries = _entries(spec)
    if sink:
        errors = [
            replace(e, code=e.code if e.code.startswith("bundle.") else f"bundle.{e.code}")
            for e in sink.sorted()
        ]
        raise PolicyLoadError(errors, sink.dropped)
    return _Manifest(name, version, tuple(entries))


def _entries(spec: Reader) -> list[_Entry]:
    items = spec.items("files", required=True)
    if len(items) > MAX_MEMBERS - 1:
        spec.error("files", "bundle.too_many", f"{len(items)} files (max {MAX_MEMBERS - 1})")
    entries: list[_Entry] = []
    total = 0
    for item, path, line in items:
        e = spec.sub(item, path, line)
        e.only("path", "sha256", "bytes")
        member = e.text("path", required=True)
        digest = e.text("sha256", required=True)
        size = e.integer("bytes", required=True, hi=2**62)
        problem = member_problem(member) if member is not None else None
        if problem is not None:
            e.error("path", *problem)
        elif member == MANIFEST or member in {x.path for x in entries}:
            e.error("path", "bundle.duplicate", f"{member!r} is listed twice")
        if digest is not None and not _SHA256.match(digest):
            e.error("sha256", "bundle.sha256", "must be 64 lowercase hex digits")
        if size is not None and size > MAX_MEMBER_BYTES:
            e.error("bytes", "bundle.too_large", f"{size} bytes (max {MAX_MEMBER_BYTES})")
        total += size or 0
        if member is not None and digest is not None and size is not None:
            entries.append(_Entry(member, digest, size))
    if total > MAX_TOTAL_BYTES:
        spec.error("files", "bundle.too_large", f"{total} bytes in all (max {MAX_TOTAL_BYTES})")
    return entries


# --- load ----------------------------------------------------------------------------------


def is_bundle(path: Path) -> bool:
    """A path naming a bundle: ends with .tar.gz or .tgz and is not a directory."""
    return path.name.endswith(BUNDLE_SUFFIXES) and not path.is_dir()


def load_bundle(path: Path, keys: Sequence[Path] = ()) -> tuple[PolicySnapshot, BundleInfo]:
    """Verify, extract to a temporary directory and compile a bundle."""
    return _load(_read_archive(path), path.name, str(path), keys)


def bundle_from_bytes(
    data: bytes, keys: Sequence[Path] = (), *, label: str = "bundle.tar.gz"
) -> tuple[PolicySnapshot, BundleInfo]:
    """Like load_bundle, for an archive held in memory (errors name it `label`)."""
    if len(data) > MAX_TOTAL_BYTES:
        _fail(label, "bundle.too_large", "", f"archive over {MAX_TOTAL_BYTES} bytes")
    return _load(data, label, label, keys)


def load_source(path: Path, keys: Sequence[Path] = ()) -> tuple[PolicySnapshot, SourceInfo]:
    """Compile a policy directory or bundle; PolicyLoadError for anything else."""
    if path.is_dir():
        return load_directory(path, keys), SourceInfo("directory", str(path))
    if is_bundle(path) and path.exists():
        snapshot, info = load_bundle(path, keys)
        return snapshot, SourceInfo("bundle", str(path), info)
    if not path.exists():
        _fail(str(path), "source.missing", "", "policy source does not exist")
    _fail(str(path), "source.kind", "", "not a directory or a .tar.gz/.tgz bundle")


def external_files(snapshot: PolicySnapshot, root: Path) -> list[Path]:
    """Files a snapshot read from outside `root` (JWKS or OpenAPI files referenced by path).

    Lexical, not resolved: a symlink in the directory is inside (a bundle packs its target)."""
    base = os.path.normpath(root)
    return [p for p in snapshot.watched if not Path(os.path.normpath(p)).is_relative_to(base)]


def _load(
    data: bytes, label: str, path: str, keys: Sequence[Path]
) -> tuple[PolicySnapshot, BundleInfo]:
    with tempfile.TemporaryDirectory(prefix="guardrail-bundle-") as tmp:
        root = Path(tmp)
        info = _extract(data, label, path, root)
        prefix = f"{root}{os.sep}"

        def local(text: str) -> str:
            return text.replace(prefix, "").replace(str(root), label)

        try:
            snapshot = load_directory(root, keys, confined=True)
        except PolicyLoadError as exc:
            errors = [replace(e, file=local(e.file), message=local(e.message)) for e in exc.errors]
            raise PolicyLoadError(sorted(errors), exc.dropped) from None
        outside = external_files(snapshot, root)
        if outside:
            msg = "a bundle must hold every file its policies read"
            raise PolicyLoadError(
                [PolicyError(label, 0, local(str(p)), "bundle.external", msg) for p in outside]
            )
    # The temporary files are gone: the bundle, not its members, is what gets watched.
    files = tuple(local(f) for f in snapshot.files)
    return replace(snapshot, files=files, watched=()), info
