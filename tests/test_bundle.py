"""Policy bundles: reproducible builds, safe opening of hostile archives, loading, the CLI."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import shutil
import subprocess
import sys
import tarfile
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519
from jwt.algorithms import OKPAlgorithm

from guardrail_authz.policy.compile import load_directory
from guardrail_authz.policy.errors import PolicyError, PolicyLoadError
from guardrail_authz.rollout import bundle, bundle_cli
from guardrail_authz.rollout.bundle import (
    BundleInfo,
    SourceInfo,
    build_bundle,
    bundle_from_bytes,
    external_files,
    is_bundle,
    load_bundle,
    load_source,
    open_bundle,
)
from tests.conftest import SHIPPED_POLICIES

PUBLIC = """\
apiVersion: guardrail-authz/v1
kind: GuardrailPolicy
metadata: {name: tiny, version: "7"}
spec:
  hosts: ["*"]
  routes:
    - name: ping
      match: {paths: [/ping]}
      rules:
        - {name: anyone, effect: allow}
"""
TEST_DOC = "apiVersion: guardrail-authz/v1\nkind: GuardrailTest\nmetadata: {name: t}\n"
Members = list[tuple[tarfile.TarInfo, bytes | None]]


# --- helpers that build archives by hand, hostile ones included ---------------------------


def _reg(name: str, data: bytes) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    return info, data


def _special(name: str, kind: bytes, linkname: str = "") -> tuple[tarfile.TarInfo, None]:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = linkname
    return info, None


def _sparse(name: str, data: bytes) -> tuple[tarfile.TarInfo, bytes]:
    info, data = _reg(name, data)
    info.pax_headers = {"GNU.sparse.map": f"0,{len(data)}", "GNU.sparse.size": str(len(data))}
    return info, data


def _manifest(files: list[tuple[str, bytes]], extra: str = "") -> tuple[tarfile.TarInfo, bytes]:
    lines = [
        "apiVersion: guardrail-authz/v1",
        "kind: PolicyBundle",
        "metadata: {name: hostile, version: '1'}",
        "spec:",
        "  files:" + ("" if files else " []"),
    ]
    lines += [
        f"    - {{path: '{n}', sha256: {hashlib.sha256(d).hexdigest()}, bytes: {len(d)}}}"
        for n, d in files
    ]
    return _reg("manifest.yaml", ("\n".join(lines) + "\n" + extra).encode())


def _archive(path: Path, members: Members, level: int = 6) -> Path:
    raw = io.BytesIO()
    with (
        gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=level) as gz,
        tarfile.open(fileobj=gz, mode="w", format=tarfile.PAX_FORMAT) as tar,
    ):
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    path.write_bytes(raw.getvalue())
    return path


def _ok_files() -> list[tuple[str, bytes]]:
    return [("tiny.yaml", PUBLIC.encode()), ("notes.yaml", TEST_DOC.encode())]


def _refusal(archive: Path, dest: Path) -> PolicyError:
    with pytest.raises(PolicyLoadError) as info:
        open_bundle(archive, dest)
    assert list(dest.iterdir()) == []  # nothing left behind
    return info.value.errors[0]


# --- building ---------------------------------------------------------------------------


def test_shipped_policies_round_trip_with_the_same_version(tmp_path: Path) -> None:
    out = tmp_path / "shop.tar.gz"
    built = build_bundle(SHIPPED_POLICIES, out, name="shop-guardrails", version="2026.11.22-1")
    snapshot, info = load_bundle(out)
    assert snapshot.version == load_directory(SHIPPED_POLICIES).version
    shipped = tuple(sorted(p.name for p in SHIPPED_POLICIES.iterdir()))
    assert info == built
    assert info == BundleInfo(
        "shop-guardrails",
        "2026.11.22-1",
        hashlib.sha256(out.read_bytes()).hexdigest(),
        shipped,
        str(out),
    )
    # Member names, never the temporary directory; test files travel but are no policy files.
    assert set(snapshot.files) == {n for n in shipped if not n.endswith("-tests.yaml")}
    assert snapshot.watched == ()


def test_builds_are_byte_identical(tmp_path: Path) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(SHIPPED_POLICIES, copy)
    for path in copy.iterdir():  # other timestamps and modes must not matter
        path.touch()
        path.chmod(0o600)
    a = build_bundle(SHIPPED_POLICIES, tmp_path / "a.tgz", name="shop", version="1")
    b = build_bundle(copy, tmp_path / "b.tgz", name="shop", version="1")
    c = build_bundle(copy, tmp_path / "c.tgz", name="shop", version="2")
    assert (tmp_path / "a.tgz").read_bytes() == (tmp_path / "b.tgz").read_bytes()
    assert a.sha256 == b.sha256 != c.sha256
    with tarfile.open(tmp_path / "a.tgz") as tar:
        members = tar.getmembers()
    assert [m.name for m in members] == ["manifest.yaml", *sorted(a.files)]
    assert {(m.mtime, m.uid, m.gid, m.mode, m.uname) for m in members} == {(0, 0, 0, 0o644, "")}
    header = (tmp_path / "a.tgz").read_bytes()[:10]
    assert header[4:8] == b"\0\0\0\0"  # gzip mtime 0


def test_build_packs_a_configmap_mount_and_its_side_files(tmp_path: Path) -> None:
    src = tmp_path / "mount"
    data = src / "..2026_11_22_10_00_00.123"
    data.mkdir(parents=True)
    key = ed25519.Ed25519PrivateKey.generate().public_key()
    jwk = json.loads(OKPAlgorithm.to_jwk(key))
    side = {
        "tiny.yaml": PUBLIC,
        "tiny.tests.yaml": TEST_DOC,
        "jwks.json": json.dumps({"keys": [jwk]}),
    }
    for name, text in side.items():
        (data / name).write_text(text)
    (src / "..data").symlink_to(data.name)
    for name in side:
        (src / name).symlink_to(f"..data/{name}")
    (src / ".hidden.yaml").write_text("ignored")
    (src / "sub").mkdir()  # not recursive
    info = build_bundle(src, tmp_path / "m.tgz", name="m", version="1")
    assert info.files == ("jwks.json", "tiny.tests.yaml", "tiny.yaml")
    snapshot, _ = load_bundle(tmp_path / "m.tgz")
    assert snapshot.version == load_directory(src).version


@pytest.mark.parametrize(
    ("name", "version", "field_word"),
    [
        ("Shop", "1", "name"),
        ("-shop", "1", "name"),
        ("shop", "", "version"),
        ("s", "1 2", "version"),
    ],
)
def test_build_refuses_bad_name_or_version(
    tmp_path: Path, name: str, version: str, field_word: str
) -> None:
    with pytest.raises(PolicyLoadError) as info:
        build_bundle(SHIPPED_POLICIES, tmp_path / "x.tgz", name=name, version=version)
    [e] = info.value.errors
    assert (e.code, e.message.split(" ")[0]) == ("bundle.metadata", field_word)
    assert not (tmp_path / "x.tgz").exists()


@pytest.mark.parametrize(
    ("file", "code"), [("has space.yaml", "bundle.name"), ("manifest.yaml", "bundle.name")]
)
def test_build_refuses_files_a_bundle_cannot_hold(tmp_path: Path, file: str, code: str) -> None:
    (tmp_path / "tiny.yaml").write_text(PUBLIC)
    (tmp_path / file).write_text(PUBLIC)
    with pytest.raises(PolicyLoadError) as info:
        build_bundle(tmp_path, tmp_path / "x.tgz", name="x", version="1")
    [e] = info.value.errors
    assert (e.code, e.file, e.field) == (code, str(tmp_path), file)


def test_build_skips_its_own_output_in_the_directory(tmp_path: Path) -> None:
    (tmp_path / "tiny.yaml").write_text(PUBLIC)
    out = tmp_path / "tiny.tgz"
    build_bundle(tmp_path, out, name="x", version="1")
    first = out.read_bytes()
    assert build_bundle(tmp_path, out, name="x", version="1").files == ("tiny.yaml",)
    assert out.read_bytes() == first


# --- opening hostile archives ---------------------------------------------------------------

_GOOD = [_reg(n, d) for n, d in _ok_files()]


def _listed(*extra: tuple[str, bytes]) -> tuple[tarfile.TarInfo, bytes]:
    return _manifest([*_ok_files(), *extra])


HOSTILE: dict[str, tuple[Callable[[], Members], str, str]] = {
    "traversal": (
        lambda: [_listed(), *_GOOD, _reg("../x.yaml", b"x")],
        "bundle.traversal",
        "../x.yaml",
    ),
    "absolute": (
        lambda: [_listed(), *_GOOD, _reg("/etc/x.yaml", b"x")],
        "bundle.absolute",
        "/etc/x.yaml",
    ),
    "nested": (
        lambda: [_listed(), *_GOOD, _reg("dir/x.yaml", b"x")],
        "bundle.nested",
        "dir/x.yaml",
    ),
    "hidden": (lambda: [_listed(), *_GOOD, _reg(".x.yaml", b"x")], "bundle.name", ".x.yaml"),
    "symlink": (
        lambda: [_listed(), *_GOOD, _special("x.yaml", tarfile.SYMTYPE, "/etc/passwd")],
        "bundle.link",
        "x.yaml",
    ),
    "hardlink": (
        lambda: [_listed(), *_GOOD, _special("x.yaml", tarfile.LNKTYPE, "tiny.yaml")],
        "bundle.link",
        "x.yaml",
    ),
    "device": (
        lambda: [_listed(), *_GOOD, _special("x.yaml", tarfile.CHRTYPE)],
        "bundle.device",
        "x.yaml",
    ),
    "fifo": (
        lambda: [_listed(), *_GOOD, _special("x.yaml", tarfile.FIFOTYPE)],
        "bundle.special",
        "x.yaml",
    ),
    "directory": (
        lambda: [_listed(), _special("x", tarfile.DIRTYPE), *_GOOD],
        "bundle.special",
        "x",
    ),
    "sparse": (
        lambda: [_listed(("x.yaml", b"x")), *_GOOD, _sparse("x.yaml", b"x")],
        "bundle.special",
        "x.yaml",
    ),
    "duplicate": (
        lambda: [_listed(), *_GOOD, _GOOD[0]],
        "bundle.duplicate",
        "tiny.yaml",
    ),
    "second manifest": (
        lambda: [_listed(), *_GOOD, _listed()],
        "bundle.duplicate",
        "manifest.yaml",
    ),
    "unlisted": (
        lambda: [_listed(), *_GOOD, _reg("extra.yaml", b"x")],
        "bundle.unlisted",
        "extra.yaml",
    ),
    "missing listed file": (
        lambda: [_listed(("gone.yaml", b"x")), *_GOOD],
        "bundle.missing",
        "gone.yaml",
    ),
    "digest mismatch": (
        lambda: [_listed(("x.yaml", b"good")), *_GOOD, _reg("x.yaml", b"evil")],
        "bundle.digest",
        "x.yaml",
    ),
    "size mismatch": (
        lambda: [_listed(("x.yaml", b"good")), *_GOOD, _reg("x.yaml", b"longer")],
        "bundle.size",
        "x.yaml",
    ),
    "manifest missing": (lambda: list(_GOOD), "bundle.manifest", "manifest.yaml"),
    "manifest not first": (
        lambda: [_GOOD[0], _listed(), _GOOD[1]],
        "bundle.manifest",
        "manifest.yaml",
    ),
    "empty archive": (list, "bundle.manifest", "manifest.yaml"),
    "manifest is a link": (
        lambda: [_special("manifest.yaml", tarfile.SYMTYPE, "tiny.yaml"), *_GOOD],
        "bundle.link",
        "manifest.yaml",
    ),
}


@pytest.mark.parametrize("case", list(HOSTILE))
def test_hostile_archives_are_refused(tmp_path: Path, case: str) -> None:
    members, code, field = HOSTILE[case]
    archive = _archive(tmp_path / "evil.tar.gz", members())
    dest = tmp_path / "dest"
    dest.mkdir()
    e = _refusal(archive, dest)
    assert (e.code, e.file, e.field) == (code, "evil.tar.gz", field)
    assert not (tmp_path / "x.yaml").exists()  # the traversal target was never written


def test_a_good_hand_made_archive_opens(tmp_path: Path) -> None:
    archive = _archive(tmp_path / "ok.tgz", [_listed(), *_GOOD])
    dest = tmp_path / "dest"
    dest.mkdir()
    info = open_bundle(archive, dest)
    assert (info.name, info.version, info.files) == ("hostile", "1", ("tiny.yaml", "notes.yaml"))
    assert sorted(p.name for p in dest.iterdir()) == ["notes.yaml", "tiny.yaml"]
    assert (dest / "tiny.yaml").read_text() == PUBLIC


MANIFEST_MISTAKES: dict[str, tuple[Callable[[str], str], int, str, str]] = {
    "unknown field": (lambda t: t + "  owner: me\n", 7, "spec.owner", "bundle.field.unknown"),
    "kind": (lambda t: t.replace("PolicyBundle", "Bundle"), 2, "kind", "bundle.kind"),
    "digest": (lambda t: t.replace("sha256: ", "sha256: AB", 1), 6, "spec.files[0].sha256",
               "bundle.sha256"),
    "path": (lambda t: t.replace("'tiny.yaml'", "'a/b.yaml'"), 6, "spec.files[0].path",
             "bundle.nested"),
    "bytes": (lambda t: t.replace("bytes: ", "bytes: many", 1), 6, "spec.files[0].bytes",
              "bundle.field.type"),
    "version": (lambda t: t.replace("version: '1'", "version: 'a b'"), 3, "metadata.version",
                "bundle.metadata"),
    "missing spec": (lambda t: t.split("spec:")[0], 1, "", "bundle.field.required"),
    "syntax": (lambda t: t + "  files: [\n", 7, "", "bundle.yaml.syntax"),
}  # fmt: skip


@pytest.mark.parametrize("case", list(MANIFEST_MISTAKES))
def test_invalid_manifest_names_line_and_field(tmp_path: Path, case: str) -> None:
    mutate, line, field, code = MANIFEST_MISTAKES[case]
    _, data = _manifest([("tiny.yaml", PUBLIC.encode())])
    text = mutate(data.decode())
    archive = _archive(tmp_path / "m.tgz", [_reg("manifest.yaml", text.encode()), *_GOOD[:1]])
    dest = tmp_path / "dest"
    dest.mkdir()
    e = _refusal(archive, dest)
    assert (e.file, e.line, e.field, e.code) == ("m.tgz:manifest.yaml", line, field, code)


def test_too_many_members(tmp_path: Path) -> None:
    files = [(f"f{i}.yaml", b"") for i in range(1000)]  # 1001 with the manifest
    archive = _archive(tmp_path / "many.tgz", [_manifest(files), *[_reg(n, d) for n, d in files]])
    dest = tmp_path / "dest"
    dest.mkdir()
    e = _refusal(archive, dest)
    assert (e.code, e.field, e.line) == ("bundle.too_many", "spec.files", 5)


@pytest.mark.parametrize("honest", [True, False])
def test_gzip_bomb_is_refused_before_it_is_written(tmp_path: Path, honest: bool) -> None:
    zeros = bytes(20 * 1024 * 1024)
    listed = zeros if honest else b"small"
    manifest = _manifest([("bomb.yaml", listed)])
    archive = _archive(tmp_path / "bomb.tgz", [manifest, _reg("bomb.yaml", zeros)], level=9)
    assert archive.stat().st_size < 100_000
    dest = tmp_path / "dest"
    dest.mkdir()
    start = time.perf_counter()
    e = _refusal(archive, dest)
    assert time.perf_counter() - start < 1.0
    assert e.code == "bundle.too_large"
    if honest:  # refused from the manifest, before any member is read
        assert (e.file, e.field) == ("bomb.tgz:manifest.yaml", "spec.files[0].bytes")
    else:  # refused from the member's header, before its data is read
        assert (e.file, e.field) == ("bomb.tgz", "bomb.yaml")


def _pax_bomb(path: Path, hidden: int) -> Path:
    """A manifest, then a member whose pax extended header holds `hidden` bytes of zeros."""
    manifest, text = _manifest(_ok_files()[:1])
    body = f" comment={'0' * hidden}\n"
    size = len(body) + len(str(len(body)))  # the record's length counts its own digits
    size += len(str(size)) - len(str(len(body)))
    record = f"{size}{body}".encode()
    pax = tarfile.TarInfo("././@PaxHeader")
    pax.type, pax.size = tarfile.XHDTYPE, len(record)
    info, data = _reg("tiny.yaml", PUBLIC.encode())
    pad = bytes(-len(record) % 512)
    parts = [manifest.tobuf(), text, bytes(-len(text) % 512), pax.tobuf(), record, pad]
    parts += [info.tobuf(), data, bytes(-len(data) % 512), bytes(1024)]
    path.write_bytes(gzip.compress(b"".join(parts), compresslevel=1))
    return path


def test_decompressed_bytes_are_counted_not_taken_from_headers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Zeros hidden in a pax extended header: no member's size says so, the stream is cut.
    # With the limit lowered to 1 MiB (+ about 3 MiB for headers), 8 MiB must be refused.
    monkeypatch.setattr(bundle, "MAX_TOTAL_BYTES", 1024 * 1024)
    dest = tmp_path / "dest"
    dest.mkdir()
    small = _pax_bomb(tmp_path / "small.tgz", 1000)
    assert open_bundle(small, dest).files == ("tiny.yaml",)  # the hand-made layout is valid
    shutil.rmtree(dest)
    dest.mkdir()
    bomb = _pax_bomb(tmp_path / "pax.tgz", 8 * 1024 * 1024)
    assert bomb.stat().st_size < 100_000
    e = _refusal(bomb, dest)
    assert (e.code, e.file) == ("bundle.too_large", "pax.tgz")


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"apiVersion: guardrail-authz/v1\n", "not a gzip file"),
        (gzip.compress(b"plain text, not a tar" * 40), "not a readable tar.gz"),
        (b"\x1f\x8b\x08\x00garbage", "not a readable tar.gz"),
    ],
)
def test_not_a_tar_gz(tmp_path: Path, content: bytes, message: str) -> None:
    (tmp_path / "x.tgz").write_bytes(content)
    dest = tmp_path / "dest"
    dest.mkdir()
    e = _refusal(tmp_path / "x.tgz", dest)
    assert (e.code, e.file) == ("bundle.format", "x.tgz")
    assert message in e.message


def test_truncated_archive(tmp_path: Path) -> None:
    archive = _archive(tmp_path / "t.tgz", [_listed(), *_GOOD])
    archive.write_bytes(archive.read_bytes()[:-30])
    dest = tmp_path / "dest"
    dest.mkdir()
    assert _refusal(archive, dest).code in {"bundle.format", "bundle.missing"}


def test_destination_must_be_an_empty_directory(tmp_path: Path) -> None:
    archive = _archive(tmp_path / "ok.tgz", [_listed(), *_GOOD])
    dest = tmp_path / "dest"
    dest.mkdir()
    (dest / "tiny.yaml").write_text("already here")
    with pytest.raises(PolicyLoadError) as info:
        open_bundle(archive, dest)
    assert info.value.errors[0].code == "bundle.dest"
    assert (dest / "tiny.yaml").read_text() == "already here"
    with pytest.raises(PolicyLoadError):
        open_bundle(archive, tmp_path / "nowhere")


# --- loading --------------------------------------------------------------------------------


def test_policy_errors_inside_a_bundle_name_the_member_and_line(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "tiny.yaml").write_text(PUBLIC.replace("effect: allow", "effect: maybe"))
    archive = _archive(
        tmp_path / "b.tgz",
        [
            _manifest([("tiny.yaml", (src / "tiny.yaml").read_bytes())]),
            _reg("tiny.yaml", (src / "tiny.yaml").read_bytes()),
        ],
    )
    with pytest.raises(PolicyLoadError) as info:
        load_bundle(archive)
    [e] = info.value.errors
    assert (e.file, e.line, e.field) == ("tiny.yaml", 10, "spec.routes[0].rules[0].effect")
    assert "guardrail-bundle-" not in info.value.render()
    with pytest.raises(PolicyLoadError) as info:
        load_bundle(_archive(tmp_path / "e.tgz", [_manifest(_ok_files()[1:]), _GOOD[1]]))
    [e] = info.value.errors
    assert (e.code, e.file) == ("dir.empty", "e.tgz")


def test_bundle_from_bytes(tmp_path: Path) -> None:
    out = tmp_path / "b.tgz"
    build_bundle(SHIPPED_POLICIES, out, name="shop", version="3")
    snapshot, info = bundle_from_bytes(out.read_bytes(), label="upload.tgz")
    assert snapshot.version == load_directory(SHIPPED_POLICIES).version
    assert (info.name, info.version, info.path) == ("shop", "3", "upload.tgz")
    assert info.sha256 == hashlib.sha256(out.read_bytes()).hexdigest()
    with pytest.raises(PolicyLoadError) as refused:
        bundle_from_bytes(b"nope", label="upload.tgz")
    assert [(e.code, e.file) for e in refused.value.errors] == [("bundle.format", "upload.tgz")]


def test_files_outside_the_bundle_are_refused(tmp_path: Path) -> None:
    (tmp_path / "spec.yaml").write_text("openapi: 3.0.3\npaths: {}\n")
    outside = tmp_path / "spec.yaml"
    openapi = f"  openapi: {{file: {outside}, rules: [{{name: a, effect: allow}}]}}\n"
    policy = PUBLIC.replace("  routes:", openapi + "  routes:")
    src = tmp_path / "src"
    src.mkdir()
    (src / "tiny.yaml").write_text(policy)
    load_directory(src)  # fine as a directory
    archive = _archive(
        tmp_path / "b.tgz",
        [_manifest([("tiny.yaml", policy.encode())]), _reg("tiny.yaml", policy.encode())],
    )
    with pytest.raises(PolicyLoadError) as info:
        load_bundle(archive)
    [e] = info.value.errors
    # Refused where the policy names it, before the file is opened: a bundle (e.g. one sent
    # to the admin API's Validate) cannot probe files of the server.
    assert (e.code, e.file, e.field) == ("bundle.external", "tiny.yaml", "spec.openapi.file")
    assert str(outside) in e.message
    probe = policy.replace(str(outside), "../../etc/nonexistent.yaml")
    archive = _archive(
        tmp_path / "c.tgz",
        [_manifest([("tiny.yaml", probe.encode())]), _reg("tiny.yaml", probe.encode())],
    )
    with pytest.raises(PolicyLoadError) as info:
        load_bundle(archive)
    [e] = info.value.errors
    assert e.code == "bundle.external"  # same answer whether the file exists or not


JWT_POLICY = """\
apiVersion: guardrail-authz/v1
kind: GuardrailPolicy
metadata: {name: signed}
spec:
  jwt:
    issuer: https://issuer.test
    audiences: [aud]
    jwks: {file: jwks.json}
  routes:
    - name: r
      match: {paths: [/r]}
      rules:
        - {name: users, effect: allow, when: {authenticated: true}}
"""


def _jwks_dir(tmp_path: Path) -> Path:
    """A policy reading jwks.json, which is a symlink to a file elsewhere (as a mount does)."""
    key = ed25519.Ed25519PrivateKey.generate().public_key()
    (tmp_path / "shared.json").write_text(
        json.dumps({"keys": [json.loads(OKPAlgorithm.to_jwk(key))]})
    )
    src = tmp_path / "src"
    src.mkdir()
    (src / "signed.yaml").write_text(JWT_POLICY)
    (src / "jwks.json").symlink_to(tmp_path / "shared.json")
    return src


def test_a_jwks_file_travels_in_the_bundle(tmp_path: Path) -> None:
    src = _jwks_dir(tmp_path)
    assert external_files(load_directory(src), src) == []  # the symlink is packed, not outside
    build_bundle(src, tmp_path / "j.tgz", name="j", version="1")
    (tmp_path / "shared.json").unlink()  # the bundle holds its own copy
    snapshot, info = load_bundle(tmp_path / "j.tgz")
    assert info.files == ("jwks.json", "signed.yaml")
    assert snapshot.watched == ()  # the temporary copy is gone; the archive is what is watched
    assert sorted(snapshot.files) == ["jwks.json", "signed.yaml"]


def test_a_jwks_file_bundle_has_a_stable_version(tmp_path: Path) -> None:
    src = _jwks_dir(tmp_path)
    build_bundle(src, tmp_path / "j.tgz", name="j", version="1")
    first, _ = load_bundle(tmp_path / "j.tgz")
    again, _ = load_bundle(tmp_path / "j.tgz")
    assert first.version == again.version == load_directory(src).version


def test_load_source_directory_bundle_and_missing(tmp_path: Path) -> None:
    snap, src = load_source(SHIPPED_POLICIES)
    assert src == SourceInfo("directory", str(SHIPPED_POLICIES), None)
    out = tmp_path / "shop.tgz"
    built = build_bundle(SHIPPED_POLICIES, out, name="shop", version="1")
    bundled, src = load_source(out)
    assert (bundled.version, src) == (snap.version, SourceInfo("bundle", str(out), built))
    for missing in (tmp_path / "gone", tmp_path / "gone.tar.gz"):
        with pytest.raises(PolicyLoadError) as info:
            load_source(missing)
        assert [(e.code, e.file) for e in info.value.errors] == [("source.missing", str(missing))]
    (tmp_path / "policy.yaml").write_text(PUBLIC)
    with pytest.raises(PolicyLoadError) as info:
        load_source(tmp_path / "policy.yaml")
    assert info.value.errors[0].code == "source.kind"
    assert is_bundle(out)
    assert is_bundle(tmp_path / "later.tar.gz")
    assert not is_bundle(tmp_path / "policy.yaml")


# --- the CLI ----------------------------------------------------------------------------------


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "guardrail_authz.rollout.bundle_cli", "bundle", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_cli_writes_a_bundle(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    for name, data in _ok_files():
        (src / name).write_bytes(data)
    out = tmp_path / "shop.tar.gz"
    run = _cli(str(src), "--out", str(out), "--name", "shop", "--version", "9")
    assert run.returncode == 0, run.stdout + run.stderr
    sha = hashlib.sha256(out.read_bytes()).hexdigest()
    assert run.stdout.splitlines() == [
        f"wrote {out}: shop@9, 2 files, sha256 {sha}",
        f"policy version: {load_directory(src).version}",
    ]
    assert load_bundle(out)[1].files == ("notes.yaml", "tiny.yaml")


def test_cli_refuses_a_directory_that_does_not_load(tmp_path: Path) -> None:
    (tmp_path / "tiny.yaml").write_text(PUBLIC.replace("effect: allow", "effect: maybe"))
    (tmp_path / "other.yaml").write_text(PUBLIC.replace("tiny", "Bad").replace("ping", "pong"))
    out = tmp_path / "x.tgz"
    run = _cli(str(tmp_path), "--out", str(out), "--name", "x", "--version", "1")
    assert run.returncode == 1
    assert "tiny.yaml:10: spec.routes[0].rules[0].effect:" in run.stdout
    assert "other.yaml:3:" in run.stdout
    assert "2 error(s)" in run.stderr
    assert not out.exists()


def test_cli_refuses_a_bad_name(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "x.tgz"
    argv = ["bundle", str(SHIPPED_POLICIES), "--out", str(out), "--name", "Shop", "--version", "1"]
    assert bundle_cli.main(argv) == 2
    assert "name 'Shop'" in capsys.readouterr().err
    assert not out.exists()


def test_cli_refuses_a_set_that_reads_files_outside(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    outside = tmp_path / "spec.yaml"
    outside.write_text("openapi: 3.0.3\npaths: {}\n")
    openapi = f"  openapi: {{file: {outside}, rules: [{{name: a, effect: allow}}]}}\n"
    src = tmp_path / "src"
    src.mkdir()
    (src / "tiny.yaml").write_text(PUBLIC.replace("  routes:", openapi + "  routes:"))
    out = tmp_path / "x.tgz"
    argv = ["bundle", str(src), "--out", str(out), "--name", "x", "--version", "1"]
    assert bundle_cli.main(argv) == 1
    assert f"{outside}: read by a policy but outside {src}" in capsys.readouterr().err
    assert not out.exists()
