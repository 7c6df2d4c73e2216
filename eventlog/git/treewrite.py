"""Writing a whole tree into an empty directory, from several threads: the file-writing half of
a checkout (``checkout.py`` has the rest: the public methods, switches, hashing what is on disk).

Contract of :func:`write_tree_parallel`: every entry name is checked (:func:`checked_entries`:
no ``..``, ``.``, ``/``, NUL, ``.git``, duplicates; a backslash only where the OS separates
paths with it) before anything is made for it; every file, link and directory is created
fresh (``O_EXCL``, ``mkdir``, ``symlink``) relative to an open directory descriptor, never
following a symlink; so nothing is written outside the target. The tree id returned is hashed
from the names, modes and object ids written, where each file's
bytes were checked against its object id as they were read (``_blob_data``) and its size on disk
after writing. Reading, inflating and hashing, and file creation let the GIL go, so threads
(``jobs`` > 1) can use every core where files are big. By default (:data:`CHECKOUT_JOBS`) the
files are written by the walking thread, and, in a single-threaded process on Linux with two
cores or more, half of them by a forked child (:class:`_Halves`, from :data:`FORK_FILES` files).

The trees and blobs come from a ``source`` with ``_lookup(oid)`` (a tree: iterable of entries
with ``name``, ``filemode``, ``id``) and ``_blob_data(oid)``: `GitStore` (``repository.py``) or
the pygit2-free `TreeReader` (``tree_reader.py``). No pygit2 here.
"""

from __future__ import annotations

import errno
import hashlib
import os
import sys

from ..containment import check_name
from ..errors import CheckoutWriteFailed, GitStoreError, UnsafePath
from ..forked import end_child, exit_description, fork_computing

MODE_BLOB, MODE_EXEC, MODE_LINK, MODE_TREE = 0o100644, 0o100755, 0o120000, 0o040000
"""Git's file modes: regular file, executable file, symlink, directory."""


CHECKOUT_JOBS = 1
"""Threads writing a checkout's files by default; 1 writes them on the walking thread, with no
pool. Inflating, hashing and file creation let the GIL go, but a tree of small files spends
most of its time in Python per file, where threads only fight over the GIL: on 2 cores, a
2,000-file / 25 MB tree took 213 ms inline against 247 ms with one pool thread and 311 ms with
two on tmpfs, 236 against 266 and 270 ms on ext4 (medians of 5, session 6). Files of hundreds
of KB gain from threads (2 threads inflate and hash ~1.6x as fast): pass ``jobs``.

A second process has no GIL to share: with ``jobs`` not given, a single-threaded process on
Linux with two cores forks a child for half of a big batch (:class:`_Halves`). The same tree,
in-process, medians of 7 alternating: 230 -> 146 ms on tmpfs, 240 -> 192 ms on ext4
(session 8)."""
_OPEN_DIRS = 256  # directories held open at once by a checkout

TICK_FILES = 256
"""Files between two calls of a checkout's ``progress`` within a batch of directories."""

FORK_FILES = 512
"""Fewest files in one batch of directories for :class:`_Halves` to fork a child that writes
half of them (below it, the fork and the hand-back cost more than the child saves)."""


_OUTPUT_ERRNOS = frozenset((errno.ENOSPC, errno.EDQUOT, errno.EACCES, errno.EPERM, errno.EROFS))
"""OS errors that are the fault of the directory written, not of the repository read."""


def write_failed(what: str, exc: OSError, hint: str = "") -> GitStoreError:
    """The error of a checkout whose write failed (``what``: "checkout of T failed at 'f'"):
    :class:`CheckoutWriteFailed` when the output's filesystem is the cause (full, a quota,
    permissions, read-only), so that no caller retries the checkout from elsewhere; else a
    :class:`GitStoreError` ending with ``hint``."""
    if exc.errno in _OUTPUT_ERRNOS:
        return CheckoutWriteFailed(f"{what}: {exc}", exc.errno)
    return GitStoreError(f"{what}: {exc}{hint}")


def _umask() -> int | None:
    try:
        with open("/proc/self/status", "rb") as f:
            return next(int(line.split()[1], 8) for line in f if line.startswith(b"Umask:"))
    except (OSError, ValueError, IndexError, StopIteration):
        return None


_UMASK = _umask()


def write_tree_parallel(git, tree, root_fd: int, tree_id: str, jobs: int | None,
                        stats: dict[str, os.stat_result] | None = None, progress=None) -> str:
    """Write ``tree`` into the empty directory ``root_fd``; return the tree id of what was
    written (from the bytes written). Directories and symlinks are made by this thread, files
    by ``jobs`` threads (a directory's files by one thread, relative to its descriptor; by this
    thread when ``jobs`` is 1). ``jobs`` None is :data:`CHECKOUT_JOBS`, with half of a big
    tree's files written by a forked child where :func:`_may_fork` allows. With ``stats``, the
    stat data of every path written goes into it (see `checkout`). ``progress(files written)``
    is called as batches of directories are done (every :data:`_OPEN_DIRS`, and at the end; a
    batch is not cut smaller for it: on ext4 a 24,000-file tree in 6 batches instead of 1 took
    7.8 s instead of 2.4 s), and within a batch every :data:`TICK_FILES` files written on this
    thread (with a forked child writing the other half, its half is counted as this one's)."""
    if jobs is None and CHECKOUT_JOBS == 1 and _may_fork():
        executor = _Halves(progress)
    elif (jobs or CHECKOUT_JOBS) > 1:
        from concurrent.futures import ThreadPoolExecutor  # ~6 ms to import: only when asked for

        executor = ThreadPoolExecutor(max_workers=jobs or CHECKOUT_JOBS)
    else:
        executor = _Inline(progress)
    entries: dict[int, list] = {}  # node -> [(sort key, mode, name, oid or node)], filled below
    pending: list[tuple] = []  # (future, node, dir fd)
    stack = [(tree, root_fd, 0, "")]
    next_node = 1
    written = 0  # files written so far, for ``progress``

    def collect() -> None:
        nonlocal written
        written += _collect(pending, entries, root_fd)
        if progress is not None:
            progress(written)
    try:
        with executor as pool:
            try:
                while stack:
                    current, fd, node, prefix = stack.pop()
                    files, own = [], entries.setdefault(node, [])
                    pending.append((None, node, fd))  # its descriptor is closed whatever happens
                    for entry in checked_entries(current, tree_id):
                        name, mode = entry.name, entry.filemode
                        bname = os.fsencode(name)
                        try:
                            if mode == MODE_TREE:
                                os.mkdir(name, 0o755, dir_fd=fd)
                                sub = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fd)
                                own.append((bname + b"/", b"40000", bname, next_node))
                                stack.append((git._lookup(entry.id), sub, next_node, f"{prefix}{name}/"))
                                if stats is not None:
                                    stats[f"{prefix}{name}"] = os.fstat(sub)
                                next_node += 1
                            elif mode == MODE_LINK:
                                data = git._blob_data(entry.id)
                                os.symlink(data, bname, dir_fd=fd)
                                own.append((bname, b"120000", bname, hash_object(b"blob", data)))
                                if stats is not None:
                                    stats[f"{prefix}{name}"] = os.lstat(bname, dir_fd=fd)
                            elif mode in (MODE_BLOB, MODE_EXEC):
                                files.append((name, mode, entry.id))
                            else:
                                raise GitStoreError(
                                    f"tree {tree_id} has entry {name!r} of unsupported mode {mode:o}")
                        except OSError as exc:
                            raise write_failed(f"checkout of {tree_id} failed at {name!r}", exc) from exc
                    pending[-1] = (pool.submit(_write_files, git, fd, files, tree_id, prefix, stats), node, fd)
                    if len(pending) >= _OPEN_DIRS:
                        collect()
                collect()
            except BaseException:
                for future, _, _ in pending:
                    if future is not None:
                        future.cancel()
                raise
    finally:  # the pool has finished every started write by now
        for _, _, fd in pending:
            if fd != root_fd:
                os.close(fd)
        for _, fd, _, _ in stack:  # directories not reached after a failure
            os.close(fd)
    return _tree_hash(entries, 0)


class _Done:
    """The result of a call already made (what `_Inline` hands back for a future)."""

    def __init__(self, value):
        self.value = value

    def result(self):
        return self.value

    def cancel(self) -> bool:
        return False


class _Ticks:
    """Files written so far, told to ``progress`` every :data:`TICK_FILES` files within a batch
    of directories (a tree of few directories is one batch: without it, a bar shows 0 and then
    all)."""

    def __init__(self, progress):
        self.progress, self.done, self._told = progress, 0, 0

    def tell(self, files: int) -> None:
        if self.progress is not None and files - self._told >= TICK_FILES:
            self._told = files
            self.progress(files)


class _Inline(_Ticks):
    """An executor that runs each call at once on the calling thread (``jobs`` of 1)."""

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        return None

    def submit(self, fn, *args) -> _Done:
        value = fn(*args)
        self.done += len(value)
        self.tell(self.done)
        return _Done(value)


def _may_fork() -> bool:
    """Whether a checkout may fork a second writer: on Linux (``fork`` with no surprises), in a
    process with no other Python thread (a fork copies none of them, and a lock one of them
    holds would stay held in the child) and with a second core to run it on."""
    if sys.platform != "linux":
        return False
    import threading

    return threading.active_count() == 1 and len(os.sched_getaffinity(0)) > 1


class _Halves(_Ticks):
    """An executor of :func:`_write_files` in two processes: the directories submitted are
    written when the first result is asked for (`_collect`), the first half of their files (in
    the walk's order; one directory's files may be cut between the halves) by a forked child,
    the rest by this process meanwhile; the child hands back what ``_write_files`` returned and
    the stat data it took (pickled, through a pipe) and leaves with ``os._exit``. A batch of
    fewer than :data:`FORK_FILES` files is written here alone.

    Measured on 2 cores, a 2,000-file / 25 MB tree: see ``CHECKOUT_JOBS``'s numbers and
    ``bench/bench_cold_replay.py``."""

    def __init__(self, progress=None):
        super().__init__(progress)
        self._todo: list[_Later] = []

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self._todo.clear()  # cancelled or never asked for: nothing runs after the walk

    def submit(self, fn, *args) -> _Later:
        later = _Later(self, fn, args)
        self._todo.append(later)
        return later

    def run(self) -> None:
        todo, self._todo = self._todo, []
        there, here, need = [], [], sum(len(job.args[2]) for job in todo) // 2
        for job in todo:  # the child takes the first half of the files, a directory's may be cut
            job.ran, job.value, files = True, [], job.args[2]
            take = min(len(files), need)
            if take:
                there.append((job, files[:take]))
                need -= take
            if take < len(files):
                here.append((job, files[take:]))
        batch, base = sum(len(job.args[2]) for job in todo), self.done
        self.done += batch
        if 2 * sum(len(files) for _, files in there) < FORK_FILES or not here:
            for job in todo:
                job.value = job.fn(*job.args)
                base += len(job.value)
                self.tell(base)
            return
        import pickle

        def theirs() -> bytes:
            try:
                done = [_in_child(job, files) for job, files in there]
            except GitStoreError as exc:
                done = exc
            return pickle.dumps(done, protocol=pickle.HIGHEST_PROTOCOL)

        pid, pipe = fork_computing(theirs)
        reaped = False
        try:
            with pipe:
                mine = 0
                for job, files in here:
                    fn, (git, fd, _, tree_id, prefix, stats) = job.fn, job.args
                    job.value += fn(git, fd, files, tree_id, prefix, stats)
                    mine += len(files)
                    self.tell(base + min(2 * mine, batch))  # the child writes its half meanwhile
                data = pipe.read()
            _, status = os.waitpid(pid, 0)
            reaped = True
        finally:
            if not reaped:  # this half failed or was interrupted: end the child too
                end_child(pid)
        tree_id = todo[0].args[3]
        if not os.WIFEXITED(status) or os.WEXITSTATUS(status) != 0 or not data:
            raise GitStoreError(f"checkout of {tree_id}: the process writing half of its files ended "
                                f"({exit_description(status)}); the directory is partly written: delete it and retry")
        done = pickle.loads(data)
        if isinstance(done, GitStoreError):
            raise done
        for (job, _), (value, stats) in zip(there, done, strict=True):
            job.value += value
            if stats:
                job.args[5].update(stats)


class _Later:
    """A directory handed to :class:`_Halves`, written when its result is first asked for."""

    def __init__(self, halves: _Halves, fn, args: tuple):
        self.halves, self.fn, self.args = halves, fn, args
        self.value = None
        self.ran = False

    def result(self):
        if not self.ran:
            self.halves.run()
        return self.value

    def cancel(self) -> bool:
        return False


def _in_child(job: _Later, files: list) -> tuple[list, dict | None]:
    """Run ``_write_files`` for ``files`` of one directory in the forked child, with its own
    stats dict (handed back with the result)."""
    fn, (git, fd, _, tree_id, prefix, stats) = job.fn, job.args
    mine = None if stats is None else {}
    return fn(git, fd, files, tree_id, prefix, mine), mine


def _collect(pending: list, entries: dict, root_fd: int) -> int:
    """Wait for the directories written so far; close their descriptors; return how many
    files they held."""
    files = 0
    while pending:
        future, node, fd = pending[0]
        written = future.result()
        entries[node].extend(written)
        files += len(written)
        pending.pop(0)
        if fd != root_fd:
            os.close(fd)
    return files


_NOT_RECORDED = ("names from data must stay inside their directory, and no snapshot records such a name: "
                 "the shadow repository is damaged or was forged; nothing of this tree was written")


def checked_entries(tree, tree_id: str):
    """The entries of ``tree``, refusing names that could escape or collide."""
    names: set[str] = set()
    for entry in tree:
        name = entry.name
        try:
            check_name(name, f"tree {tree_id}", tree=True, entry=True)
        except UnsafePath:
            raise GitStoreError(f"tree {tree_id} has a hostile entry name {name!r}; refused ({_NOT_RECORDED})") from None
        if name in names:
            raise GitStoreError(f"tree {tree_id} has a hostile entry name {name!r} (twice); refused ({_NOT_RECORDED})")
        names.add(name)
        yield entry


def write_file(dir_fd: int, name: str, mode: int, data: bytes) -> os.stat_result:
    """Create file ``name`` (never following a link, never replacing) holding ``data`` with the
    mode of a git ``mode``; return its stat data as written."""
    perm = 0o755 if mode == MODE_EXEC else 0o644
    fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, perm, dir_fd=dir_fd)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        if _UMASK is None or perm & _UMASK:
            os.fchmod(fd, perm)
        return os.fstat(fd)
    finally:
        os.close(fd)


def _write_files(git, dir_fd: int, files: list, tree_id: str, prefix: str = "",
                 stats: dict | None = None) -> list:
    out = []
    for name, mode, oid in files:
        data = git._blob_data(oid)
        try:
            st = write_file(dir_fd, name, mode, data)
        except OSError as exc:
            raise write_failed(f"checkout of {tree_id} failed at {name!r}", exc) from exc
        if stats is not None:
            stats[prefix + name] = st
        size = st.st_size
        if size != len(data):
            raise GitStoreError(f"checkout of {tree_id} wrote {size} of {len(data)} bytes of {name!r}; check the disk")
        bname = os.fsencode(name)  # the bytes written hash to oid: `_blob_data` checked them
        out.append((bname, b"100755" if mode == MODE_EXEC else b"100644", bname, str(oid)))
    return out


def _tree_hash(entries: dict, node: int) -> str:
    rows = []
    for _key, mode, name, ref in sorted(entries[node]):
        oid = _tree_hash(entries, ref) if mode == b"40000" else ref
        rows.append(mode + b" " + name + b"\0" + bytes.fromhex(oid))
    return hash_object(b"tree", b"".join(rows))



def hash_object(kind: bytes, data: bytes) -> str:
    return hashlib.sha1(b"%s %d\0" % (kind, len(data)) + data).hexdigest()
