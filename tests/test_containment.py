"""Containment: a name that comes from data never leads a file operation out of its directory.

Reproductions of issue 12 ("Path traversal"), through the real CLI against a ``file://`` remote
and S3 (a moto server on 127.0.0.1): a remote manifest that lists a blob path with ``../`` made
``pull`` create directories and files outside the store; an appended event whose blob field was
``../../../../etc/x`` was stored, and from then on ``verify`` and ``push`` failed forever. The
rule itself (``agtrace.eventlog.containment``) is tested on its own at the end.
"""

from __future__ import annotations

import json
import os
import subprocess

import hypothesis
import pytest
from hypothesis import strategies as st

from agtrace.eventlog import (
    RunEnded,
    RunStarted,
    Store,
    ToolReturned,
    UnsafePath,
    content_address,
    is_content_address,
    json_name,
    json_safe,
    quote_name,
    unquote_name,
)
from agtrace.eventlog.containment import check_name, inside, relative_parts

from .conftest import run_agtrace
from .test_remote import FileBackend, S3Backend, backend, moto_server  # noqa: F401 - fixtures


def _store_with_blob(path) -> tuple[str, str]:
    """A store with one ended run whose tool output lives in a blob: ``(run id, digest)``."""
    with Store(path) as store:
        writer = store.create_run(RunStarted(agent="t", source="test"))
        inline, digest, nbytes = store.blobs.inline_or_put("x" * 100_000)
        writer.append(ToolReturned(call_id="c1", output=inline, output_blob=digest, output_bytes=nbytes), part=1)
        writer.append(RunEnded(status="completed"))
        store.close_writer(writer)
        return writer.run_id, digest


def _files_under(root) -> set[str]:
    return {os.path.relpath(os.path.join(d, f), root) for d, _dirs, files in os.walk(root) for f in files} | {
        os.path.relpath(d, root) for d, _dirs, _files in os.walk(root)}


@pytest.mark.parametrize("traversal", ["../outside/evil", "../../outside/evil", "/tmp/abs-evil"])
def test_pull_of_a_manifest_listing_a_blob_path_with_dotdot_writes_nothing_outside_the_store(
        backend, tmp_path, traversal):  # noqa: F811
    run_id, _digest = _store_with_blob(tmp_path / "src")
    env = {**backend.env}
    run_agtrace(["push", "--all", "--remote", backend.url], tmp_path / "src", env=env, check=True)
    manifest = {"format": 1, "run_id": run_id, "last_seq": 99, "objects": [
        {"key": "../../../outside/x.seg", "sha256": "0" * 64}], "blobs": [traversal]}
    backend.put_raw(f"runs/{run_id}/manifests/{'f' * 16}-{'0' * 16}.json", json.dumps(manifest).encode())
    backend.put_raw("blobs/../outside/evil.zst", b"not a blob")  # S3 keeps such a key as it is
    before = _files_under(tmp_path)

    fresh = tmp_path / "fresh"
    proc = run_agtrace(["pull", "--all", "--json", "--remote", backend.url], fresh, env=env)

    assert proc.returncode == 1, proc.stderr.decode()
    report = json.loads(proc.stdout)
    assert any("not a content address" in p and repr(traversal) in p for p in report["problems"]), report
    assert any("../../../outside/x.seg" in p for p in report["problems"]), report
    assert report["runs"] == [run_id]  # the rest of the run was pulled
    new = {p for p in _files_under(tmp_path) - before if not p.startswith(("fresh", "remote"))}
    assert new == set(), f"pull wrote outside the store: {sorted(new)}"
    assert not os.path.exists("/tmp/abs-evil.zst")
    assert run_agtrace(["verify"], fresh).returncode == 0


def test_pull_refuses_a_run_id_that_is_a_path(tmp_path):
    remote = FileBackend(tmp_path / "remote")
    run_id, _ = _store_with_blob(tmp_path / "src")
    run_agtrace(["push", "--all", "--remote", remote.url], tmp_path / "src", check=True)
    seg = next(k for k in remote.objects() if k.startswith(f"runs/{run_id}/events/"))
    (tmp_path / "remote" / "runs" / "..x").mkdir()  # hidden: never listed; a name with a dot-dot prefix
    remote.put_raw(f"runs/not-an-id/events/{seg.rsplit('/', 1)[1]}", remote.objects()[seg])

    proc = run_agtrace(["pull", "--all", "--json", "--remote", remote.url], tmp_path / "fresh")

    report = json.loads(proc.stdout)
    assert proc.returncode == 1 and any("'not-an-id' is not a run id" in p for p in report["problems"]), report
    assert report["runs"] == [run_id]
    assert not (tmp_path / "fresh" / "runs" / "not-an-id").exists()


def test_a_symlink_in_a_file_remote_is_never_followed(tmp_path):
    """A remote directory whose ``blobs`` is a link elsewhere: push neither writes through it nor
    pull reads through it."""
    remote = FileBackend(tmp_path / "remote")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    os.symlink(elsewhere, tmp_path / "remote" / "blobs")
    _store_with_blob(tmp_path / "src")

    proc = run_agtrace(["push", "--all", "--remote", remote.url], tmp_path / "src")

    assert proc.returncode == 1
    assert "symbolic link" in proc.stderr.decode()
    assert list(elsewhere.iterdir()) == []


def test_append_refuses_a_blob_field_the_store_did_not_set_with_its_line_number(tmp_path):
    store_path = tmp_path / "store"
    run_id = run_agtrace(["new", "--agent", "t"], store_path, check=True).stdout.decode().strip()
    good = json.dumps({"kind": "line_logged", "stream": "stdout", "text": "before"})
    for blob, why in (("../../../../etc/x", "is not a content address"),
                      ("ab" * 32, "is not in")):
        bad = json.dumps({"kind": "tool_returned", "call_id": "c", "output_blob": blob})
        proc = run_agtrace(["append", run_id], store_path, input=f"{good}\n{bad}\n{good}\n".encode())
        err = proc.stderr.decode()
        assert proc.returncode == 2, err
        assert "line 2:" in err and why in err and "the 1 event(s) before line 2 are stored" in err, err
    assert run_agtrace(["verify"], store_path).returncode == 0
    remote = tmp_path / "remote"
    remote.mkdir()
    assert run_agtrace(["push", "--all", "--remote", f"file://{remote}"], store_path).returncode == 0
    log = run_agtrace(["log", run_id, "--json"], store_path, check=True).stdout.decode().splitlines()
    assert [json.loads(line)["kind"] for line in log] == ["run_started", "line_logged", "line_logged"]


def test_append_keeps_a_blob_field_naming_a_stored_blob(tmp_path):
    """``log --json | append`` copies a run, blob references included (the blobs are there)."""
    store_path = tmp_path / "store"
    run_id, digest = _store_with_blob(store_path)
    copy = run_agtrace(["new", "--agent", "copy"], store_path, check=True).stdout.decode().strip()
    lines = run_agtrace(["log", run_id, "--json"], store_path, check=True).stdout.decode().splitlines()
    body = "\n".join(line for line in lines if json.loads(line)["kind"] == "tool_returned") + "\n"

    run_agtrace(["append", copy], store_path, input=body.encode(), check=True)

    out = run_agtrace(["log", copy, "--json"], store_path, check=True).stdout.decode().splitlines()
    assert json.loads(out[-1])["output_blob"] == digest
    assert run_agtrace(["verify"], store_path).returncode == 0


# -- the rule --------------------------------------------------------------------------------


def test_content_addresses():
    good = "0123456789abcdef" * 4
    assert is_content_address(good) and content_address(good) == good
    for bad in ("", "../" + good[3:], good.upper(), good[:63], good + "0", f"{good[:62]}/x", None, 7):
        assert not is_content_address(bad)
        with pytest.raises(UnsafePath, match="not a content address"):
            content_address(bad)


def test_relative_paths_and_names():
    assert relative_parts("runs/A/events/x.seg") == ["runs", "A", "events", "x.seg"]
    for bad in ("", "/abs", "a//b", "a/../b", "..", "./a", "a/.", "a\\..\\b", "a\0b"):
        with pytest.raises(UnsafePath):
            relative_parts(bad)
    with pytest.raises(UnsafePath):
        relative_parts("blobs/.x.part", hidden=False)
    assert relative_parts("blobs/.x.part") == ["blobs", ".x.part"]
    for bad in (".git", ".GIT", ".Git"):
        with pytest.raises(UnsafePath):
            check_name(bad, tree=True)
        assert check_name(bad) == bad
    # a backslash is an ordinary character of a tree entry's name on POSIX, nowhere else
    assert check_name("a\\b", tree=True, entry=True) == "a\\b"
    for kwargs in ({}, {"tree": True}, {"hidden": False}):
        with pytest.raises(UnsafePath):
            check_name("a\\b", **kwargs)
    with pytest.raises(UnsafePath):
        relative_parts("runs/a\\b/x.seg", "remote key", hidden=False)
    for bad in ("..", ".", "", "a/b", "a\0b", ".git"):
        with pytest.raises(UnsafePath):
            check_name(bad, tree=True, entry=True)


@pytest.mark.slow  # seconds of real processes; CI runs it
def test_a_backslash_name_is_captured_replayed_and_rescored(tmp_path):
    """Issue: a file named ``a\\b`` (legal on POSIX) was captured, but replay and rescore refused
    the whole tree ("hostile entry name ... unsafe component ... refused" twice over), so every
    later part of the run could not replay while verify said it was fine. Now it is one name,
    written as it is; ``..``, ``/``, NUL and ``.git`` stay refused (the hostile-tree tests)."""
    wd = tmp_path / "work"
    wd.mkdir()
    subprocess.run(["git", "init", "-q", str(wd)], check=True)
    (wd / "base.txt").write_text("base\n")
    s = tmp_path / "store"
    script = ("echo STEP one; sleep 0.3; printf x > 'a\\b'; mkdir 'd\\e'; printf y > 'd\\e/f\\g'; sleep 0.3; "
              "echo STEP two; sleep 0.3; echo more > more.txt; sleep 0.3")
    proc = run_agtrace(["run", "--agent", "raw", "--workdir", str(wd), "--marker", "^STEP", "--json", "--",
                        "sh", "-c", script], s, check=True)
    run_id = json.loads(proc.stdout.decode().splitlines()[-1])["run_id"]
    out = tmp_path / "out"
    for part in ("1", "2"):  # the second replay switches the first one's directory
        got = run_agtrace(["replay", run_id, "--part", part, "--out", str(out), "--force"], s)
        assert got.returncode == 0, got.stderr.decode()
    assert sorted(os.listdir(out)) == ["a\\b", "base.txt", "d\\e", "more.txt"]
    assert (out / "a\\b").read_bytes() == b"x" and (out / "d\\e" / "f\\g").read_bytes() == b"y"
    assert not (out / "a").exists() and not (tmp_path / "b").exists()
    scored = run_agtrace(["rescore", run_id, "--name", "t", "--cmd", "cat 'a\\b'", "--parts", "all", "--json"], s)
    assert scored.returncode == 0, scored.stderr.decode()
    assert [r["status"] for r in json.loads(scored.stdout)["results"]] == ["ok", "ok"]
    listed = run_agtrace(["cat", run_id, "--part", "1", "--list"], s, check=True).stdout.decode()
    assert listed.splitlines() == ["a\\b", "base.txt", "d\\e/f\\g"]


def test_inside_refuses_a_path_through_a_symlink(tmp_path):
    (tmp_path / "root" / "real").mkdir(parents=True)
    os.symlink(tmp_path, tmp_path / "root" / "link")
    assert inside(tmp_path / "root", "real/new/file") == tmp_path / "root" / "real" / "new" / "file"
    with pytest.raises(UnsafePath, match="symbolic link"):
        inside(tmp_path / "root", "link/file")
    with pytest.raises(UnsafePath, match="symbolic link"):
        inside(tmp_path / "root", "link")


@pytest.mark.parametrize("case", ["dotdot", "dotgit", "symlink_then_file", "absolute"])
def test_replay_of_a_hostile_tree_writes_nothing_outside_out(tmp_path, case):
    """A run whose shadow repository holds a hostile tree (as a damaged or forged bundle could):
    `agtrace replay` refuses it and writes nothing outside --out, never through a link it wrote
    and never a `.git` entry."""
    import pygit2

    from agtrace.eventlog import GitStore, PartEnded

    from .test_gitstore import raw_tree

    victim = tmp_path / "victim"
    victim.mkdir()
    with Store(tmp_path / "store") as store:
        writer = store.create_run(RunStarted(agent="t"))
        git = GitStore.init(store.run_dir(writer.run_id) / "repo.git")
        repo = git._repo  # noqa: SLF001 - a raw tree needs the odb, as a hostile bundle has it
        payload = repo.create_blob(b"pwned\n")
        inner = raw_tree(repo, [(0o100644, b"pwned", payload)])
        link = repo.create_blob(str(victim).encode())
        entries = {
            "dotdot": [(0o040000, b"..", inner)],
            "dotgit": [(0o040000, b".git", inner)],
            "symlink_then_file": [(0o120000, b"a", link), (0o100644, b"a", payload)],
            "absolute": [(0o100644, str(victim / "pwned").encode(), payload)],
        }[case]
        tree = raw_tree(repo, [(m, n, pygit2.Oid(hex=str(o))) for m, n, o in entries])
        writer.append(PartEnded(part_kind="other", title="hostile", tree_id=tree), part=1)
        writer.append(RunEnded(status="completed"))
        store.close_writer(writer)
        run_id = writer.run_id
    out = tmp_path / "sandbox" / "out"
    out.parent.mkdir()
    before = _files_under(tmp_path)

    proc = run_agtrace(["replay", run_id, "--part", "1", "--out", str(out)], tmp_path / "store")

    assert proc.returncode == 1, proc.stderr.decode()
    err = proc.stderr.decode()
    assert "hostile" in err and "Traceback" not in err
    assert err.count("refused") == 1 and "unsafe component" not in err, err  # said once, not twice
    assert case not in ("dotdot", "dotgit") or "damaged or was forged" in err, err
    assert list(victim.iterdir()) == []
    new = _files_under(tmp_path) - before
    assert all(p.startswith(("sandbox/out", "store")) for p in new), new
    assert not (out / ".git").exists()


# -- names that are not plain text (agtrace.eventlog.quoting) ---------------------------------------


@pytest.mark.parametrize("raw,text,as_json", [
    (b"plain.txt", "plain.txt", "plain.txt"),
    (b"a\\b", "a\\b", "a\\b"),
    (b"a\nb", '"a\\nb"', "a\nb"),
    (b"e\x1b[31mred", '"e\\033[31mred"', "e\x1b[31mred"),
    (b"bad\xffname", '"bad\\377name"', '"bad\\377name"'),
    (b'"q"', '"\\"q\\""', '"q"'),
    ("caf\u00e9 \u0085".encode(), '"caf\u00e9 \\302\\205"', "caf\u00e9 \u0085"),
])
def test_names_are_quoted_as_git_quotes_them(raw, text, as_json):
    name = os.fsdecode(raw)
    assert quote_name(name) == text and json_name(name) == as_json
    assert unquote_name(text) == (name if text != name else None)


@hypothesis.given(st.binary(min_size=1, max_size=40).filter(lambda b: b"\0" not in b))
def test_a_quoted_name_reads_back_to_its_bytes(raw):
    name = os.fsdecode(raw)
    shown = quote_name(name)
    assert "\n" not in shown and "\x1b" not in shown and shown.encode()  # one line of text, UTF-8
    assert shown == name or os.fsencode(unquote_name(shown)) == raw
    assert json_safe({"files": [{"path": name}]}) == {"files": [{"path": json_name(name)}]}
    json_name(name).encode()
