"""A store on a read-only filesystem (an archive, a shared mount): every command that only reads
works on it, and writes nothing there; every command that must write it fails at once with a
message naming the read-only store. The read-only filesystem is a real read-only bind mount
(tests run as root, so file modes would not stop a write)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from .conftest import run_agtrace


@pytest.fixture
def read_only(tmp_path):
    """``mount(src)`` binds ``src`` read-only at a new path and returns it; unmounted at the end."""
    mounted: list[Path] = []

    def mount(src: Path) -> Path:
        dest = tmp_path / f"ro{len(mounted)}"
        dest.mkdir()
        proc = subprocess.run(["mount", "--bind", str(src), str(dest)], capture_output=True)
        if proc.returncode != 0:
            pytest.skip(f"cannot bind-mount here ({proc.stderr.decode().strip()})")
        mounted.append(dest)
        subprocess.run(["mount", "-o", "remount,bind,ro", str(dest)], check=True, capture_output=True)
        return dest

    try:
        yield mount
    finally:
        for dest in reversed(mounted):
            subprocess.run(["umount", "-l", str(dest)], check=False)


def _state(root: Path) -> dict[str, tuple]:
    """Every path under ``root`` with its size and mtime: what must not change."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = Path(dirpath, name)
            st = p.lstat()
            out[str(p.relative_to(root))] = (st.st_size, st.st_mtime_ns)
    return out


def _demo(tmp_path: Path) -> tuple[Path, str]:
    store = tmp_path / "S"
    run_agtrace(["demo", "--fast", "--workdir", str(tmp_path / "work")], store, check=True)
    run_id = json.loads(run_agtrace(["ls", "--json"], store, check=True).stdout)[0]["id"]
    return store, run_id


def _ok(args, store) -> str:
    proc = run_agtrace(args, store)
    err = proc.stderr.decode()
    assert proc.returncode == 0, (args, err)
    assert "Traceback" not in err
    return proc.stdout.decode()


@pytest.mark.slow
def test_every_reading_command_works_on_a_read_only_store(tmp_path, read_only):
    src, run = _demo(tmp_path)
    before = _state(src)
    ro = read_only(src)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    assert run in _ok(["ls"], ro)
    assert "completed" in _ok(["show", run], ro)
    assert "run_ended" in _ok(["log", run], ro)
    assert "tests" in _ok(["metrics", run], ro)
    assert "verified" in _ok(["replay", run, "--part", "last", "--out", str(elsewhere / "tree")], ro)
    assert (elsewhere / "tree" / "textstats" / "core.py").is_file()
    assert "average_word_length" in _ok(["cat", run, "textstats/core.py"], ro)
    assert "average_word_length" in _ok(["diff", run, "1", "last"], ro)
    _ok(["report", run, "-o", str(elsewhere / "r.html")], ro)
    assert (elsewhere / "r.html").stat().st_size > 0
    _ok(["export", run, "-o", str(elsewhere / "export")], ro)
    assert (elsewhere / "export").stat().st_size > 0
    assert run in _ok(["search", "average_word_length"], ro)
    _ok(["verify"], ro)
    _ok(["gc", "--dry-run"], ro)
    subprocess.run(["umount", str(ro)], check=True)
    assert _state(src) == before  # nothing written: no -wal, -shm, cache, checkout state


@pytest.mark.slow
def test_commands_that_write_name_the_read_only_store(tmp_path, read_only):
    src, run = _demo(tmp_path)
    before = _state(src)
    ro = read_only(src)
    (tmp_path / "remote").mkdir()
    for args in (["append", run], ["note", run, "a note"], ["tag", run, "k=v"], ["close", run, "--status", "failed"],
                 ["new", "--agent", "t"], ["reindex"], ["gc"], ["rm", run, "--yes"],
                 ["rescore", run, "--name", "t", "--cmd", "true"],
                 ["push", "--all", "--remote", f"file://{tmp_path / 'remote'}"],
                 ["pull", "--all", "--remote", f"file://{tmp_path / 'remote'}"]):
        proc = run_agtrace(args, ro, input=b"")
        err = proc.stderr.decode()
        assert proc.returncode in (1, 2), (args, proc.returncode, err)
        assert "Traceback" not in err and err.startswith("error: "), (args, err)
        assert f"the store {ro} is read-only" in err, (args, err)
    subprocess.run(["umount", str(ro)], check=True)
    assert _state(src) == before


@pytest.mark.slow
def test_a_catalog_behind_its_segments_is_caught_up_in_memory(tmp_path, read_only):
    """No catalog at all, and a run whose trees are only in bundles: both are rebuilt for the
    command (catalog in memory, bundles unbundled in a temporary directory), never written."""
    src, run = _demo(tmp_path)
    for name in ("catalog.db", "catalog.db-wal", "catalog.db-shm"):
        (src / name).unlink(missing_ok=True)
    shutil.rmtree(src / "runs" / run / "repo.git")
    before = _state(src)
    ro = read_only(src)
    assert run in _ok(["ls"], ro)
    out = tmp_path / "tree"
    assert "verified" in _ok(["replay", run, "--part", "3", "--out", str(out)], ro)
    assert "completed" in _ok(["show", run], ro)
    subprocess.run(["umount", str(ro)], check=True)
    assert _state(src) == before
