"""Importer of ISO-Bench run items: one directory ``state/runs/<repo>/<agent>/<model>/<ts>/<item>/``.

Field by field (what each file gives; every file is also kept verbatim as ``raw_recorded``):

* ``journal.json``: ``task_id``; ``commits.pre`` → base commit, ``commits.human`` → tag;
  ``run_metadata.agent`` → agent; ``run_metadata.model`` and ``.repo`` are ISO-Bench's *labels*
  (tags ``isobench_model_label``/``isobench_repo_label``), never the model or repository;
  ``<agent>.returncode`` → exit code, ``<agent>.duration_s`` and ``timestamps.written`` → the
  run's start and end; ``status``/``error`` → tag ``isobench_status`` and an error event.
* ``trajectory.json`` (TRAE): parts, model calls, usage and status (see ``trae.py``).
* ``claude_code_stdout.txt`` (``claude -p --output-format json``): ``result`` → a message
  part; ``modelUsage`` → the model as called and one ``usage_reported`` per model with
  ``costUSD``; ``is_error``/``subtype`` → status; ``session_id``, ``num_turns`` → tags.
* ``openhands_stdout.txt`` / ``*_stderr.txt``: lines; for codex_cli (whose logs land in
  ``openhands_*``) stdout is the final message (a message part) and the stderr header names
  the model (``model: …``) and Codex version.
* ``model_patch.diff`` (else ``prediction.jsonl``'s ``model_patch``): a ``patch`` part with one
  ``file_changed`` per file. With ``--repo DIR`` the base commit is fetched from DIR and the
  patch applied to it: that tree is the patch part's tree and the final snapshot. Both are
  recorded without the credential files a captured snapshot leaves out (``trees.py``).
* ``prediction.jsonl``: ``instance_id`` gives the repository owner; ``model_name_or_path`` is
  read from an unrelated config by ISO-Bench and is ignored. ``run_summary.json``: its model is
  the same wrong value and is ignored too. ``diff_targets.json`` → tags and, when there is no
  patch, ``file_changed`` events. ``prompt.json``: ``commits``, ``target_files`` → config.
* Record types are the item's file names (:data:`KNOWN`; the agents' logs as
  ``<agent>_stdout.txt``/``<agent>_stderr.txt``): another file is kept raw and counted as unknown.
  The trajectory's steps are counted as TRAE's are (``trae.py``).
* The repository name is unmangled: ISO-Bench's ``rstrip(".git")`` turned ``sglang`` into
  ``sglan``; the name is recovered from ``task_id`` (``sglang_core``) when it extends the label
  with characters of ``.git``, and the owner from ``instance_id``.
"""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
from pathlib import Path

from agtrace.eventlog import (
    ErrorOccurred,
    Event,
    FileChanged,
    GitStoreError,
    LineLogged,
    MessageAdded,
    PartEnded,
    RawRecorded,
    RunEnded,
    RunStarted,
    SnapshotTaken,
    Usage,
    UsageReported,
)

from . import register
from .base import ImportContext, ImportError_, RunSink, stat_key
from .trae import KNOWN as KNOWN_TRAE
from .trae import called_model, count_unknown, load_trajectory, write_trajectory
from .transcript import parse_ts

SOURCE = "import:isobench"
MARKERS = ("journal.json", "run_summary.json", "prediction.jsonl", "diff_targets.json", "model_patch.diff",
           "claude_code_stdout.txt")
_AGENT_KEYS = ("trae", "claude_code", "codex_cli", "codex", "openhands")
KNOWN = {"*": frozenset((*MARKERS, "trajectory.json", "prompt.json", "task.txt",
                         "<agent>_stdout.txt", "<agent>_stderr.txt")) | KNOWN_TRAE["*"]}


def file_kind(name: str) -> str:
    """The record type of an item file (see the module docstring)."""
    for stream in ("stdout", "stderr"):
        if name.endswith(f"_{stream}.txt") and name != "claude_code_stdout.txt":
            return f"<agent>_{stream}.txt"
    return name


def _load_json(path: Path) -> dict:
    data = path.read_bytes()
    try:
        obj = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        cut = isinstance(exc, json.JSONDecodeError) and (exc.pos >= len(data.rstrip()) - 1
                                                        or data.rstrip()[-1:] not in (b"}", b"]"))
        what = "truncated (the JSON stops in the middle)" if cut else f"not valid JSON ({exc})"
        raise ImportError_(f"{path}: {what}; nothing of this item was imported") from None
    if not isinstance(obj, dict):
        raise ImportError_(f"{path}: expected a JSON object")
    return obj


def unmangle_repo(label: str, task_id: str, instance_id: str = "") -> str:
    """The repository ISO-Bench's ``rstrip(".git")`` mangled (``sglang`` → ``sglan``)."""
    name = label
    head = re.split(r"[_\-]", task_id)[0] if task_id else ""
    if head.startswith(label) and head != label and set(head[len(label):]) <= set(".git"):
        name = head
    owner = ""
    if "__" in instance_id and "/" not in instance_id:
        owner = instance_id.split("__", 1)[0]
    return f"{owner}/{name}" if owner and name else name


def parse_patch_files(patch: str) -> list[FileChanged]:
    """One ``file_changed`` per file of a unified git diff, with its line counts."""
    out: list[FileChanged] = []
    cur: dict | None = None
    for line in patch.splitlines():
        if line.startswith("diff --git "):
            m = re.match(r"diff --git a/(.*) b/(.*)$", line)
            cur = {"path": m.group(2) if m else line[11:], "old": m.group(1) if m else "", "change": "modify",
                   "add": 0, "del": 0}
            out.append(cur)  # type: ignore[arg-type]
        elif cur is None:
            continue
        elif line.startswith("new file mode"):
            cur["change"] = "add"
        elif line.startswith("deleted file mode"):
            cur["change"] = "delete"
        elif line.startswith("rename to "):
            cur["change"] = "rename"
        elif line.startswith("+") and not line.startswith("+++"):
            cur["add"] += 1
        elif line.startswith("-") and not line.startswith("---"):
            cur["del"] += 1
    return [FileChanged(path=c["path"], change=c["change"], old_path=c["old"] if c["change"] == "rename" else "",
                        origin="agent", lines_added=c["add"], lines_removed=c["del"]) for c in out]  # type: ignore[index]


class _Item:
    """Everything read from one item directory, before anything is written."""

    def __init__(self, path: Path):
        self.path = path
        self.files = sorted(p for p in path.iterdir() if p.is_file())
        names = {p.name for p in self.files}
        self.journal = _load_json(path / "journal.json") if "journal.json" in names else {}
        self.summary = _load_json(path / "run_summary.json") if "run_summary.json" in names else {}
        self.prompt = _load_json(path / "prompt.json") if "prompt.json" in names else {}
        self.targets = _load_json(path / "diff_targets.json") if "diff_targets.json" in names else {}
        self.claude = {}
        if "claude_code_stdout.txt" in names:
            text = (path / "claude_code_stdout.txt").read_text(errors="replace").strip()
            if text.startswith("{"):
                self.claude = _load_json(path / "claude_code_stdout.txt")
        self.traj, _ = (load_trajectory(path / "trajectory.json") if "trajectory.json" in names
                                     else ({}, ""))
        self.prediction: dict = {}
        if "prediction.jsonl" in names:
            line = (path / "prediction.jsonl").read_text().strip().splitlines()[:1]
            try:
                self.prediction = json.loads(line[0]) if line else {}
            except json.JSONDecodeError:
                raise ImportError_(f"{path / 'prediction.jsonl'}:1: truncated or invalid JSON line") from None
        self.patch = ((path / "model_patch.diff").read_text(errors="replace") if "model_patch.diff" in names
                      else self.prediction.get("model_patch") or "")
        self.has_patch_source = "model_patch.diff" in names or "model_patch" in self.prediction
        meta = self.journal.get("run_metadata") or {}
        self.agent = meta.get("agent") or (self.summary.get("meta") or {}).get("agent") or self._agent_from_files()
        self.agent_block = next((self.journal[k] for k in _AGENT_KEYS if isinstance(self.journal.get(k), dict)), {})
        self.stdout = self._log("stdout")
        self.stderr = self._log("stderr")

    def _agent_from_files(self) -> str:
        if self.traj:
            return "trae"
        if self.claude or (self.path / "claude_code_stdout.txt").exists():
            return "claude_code"
        return ""

    def _log(self, stream: str) -> Path | None:
        prefix = {"claude_code": "claude_code", "trae": "trae", "codex": "codex"}.get(self.agent, "openhands")
        p = self.path / f"{prefix}_{stream}.txt"
        return p if p.is_file() and not (stream == "stdout" and self.claude) else None

    @property
    def commits(self) -> dict:
        return self.journal.get("commits") or self.summary.get("commits") or self.prompt.get("commits") or {}

    @property
    def task_id(self) -> str:
        return self.journal.get("task_id") or (self.summary.get("meta") or {}).get("task_id") or ""

    def model(self) -> str:
        """The model as called, from the agent's own output only."""
        if self.traj:
            return called_model(self.traj)
        usage = self.claude.get("modelUsage") or {}
        if usage:
            return max(usage, key=lambda m: (usage[m] or {}).get("costUSD") or 0)
        if self.stderr is not None:
            with open(self.stderr, errors="replace") as fh:
                for _, line in zip(range(40), fh, strict=False):
                    m = re.match(r"^model:\s*(\S+)", line.strip())
                    if m:
                        return m.group(1)
        return ""

    def times(self) -> tuple[int, int | None]:
        written = (self.journal.get("timestamps") or {}).get("written")
        duration = self.agent_block.get("duration_s")
        if isinstance(written, (int, float)):
            end = int(written * 1e9)
            return (end - int(duration * 1e9) if isinstance(duration, (int, float)) else end), end
        start = parse_ts(self.traj.get("start_time")) if self.traj else None
        if start:
            return start, parse_ts(self.traj.get("end_time"))
        return int(max(p.stat().st_mtime for p in self.files) * 1e9), None


def _git_remote(repo: Path) -> str:
    proc = subprocess.run(["git", "-C", str(repo), "config", "--get", "remote.origin.url"], capture_output=True,
                          text=True, check=False)
    return proc.stdout.strip()


class IsoBenchImporter:
    """``--format isobench``: one ISO-Bench run item directory."""

    name = "isobench"
    known = KNOWN

    def detect(self, path: Path) -> bool:
        return path.is_dir() and any((path / m).is_file() for m in MARKERS)

    def read(self, path: Path, ctx: ImportContext) -> None:
        if not path.is_dir():
            raise ImportError_(f"{path}: an ISO-Bench source is a run item directory (journal.json, "
                               "prediction.jsonl, …), not a file; pass the directory")
        item = _Item(path)
        started_ts, end_ts = item.times()
        meta = item.journal.get("run_metadata") or {}
        label = meta.get("repo") or (item.summary.get("meta") or {}).get("repo") or ""
        repo = unmangle_repo(label, item.task_id, str(item.prediction.get("instance_id") or ""))
        if ctx.repo is not None:
            repo = _git_remote(ctx.repo) or repo
        prompt = (path / "task.txt").read_text(errors="replace") if (path / "task.txt").is_file() else ""
        prompt = prompt or str(item.traj.get("task") or "")
        tags = {"item_id": path.name, "isobench_repo_label": label, "isobench_model_label": meta.get("model") or "",
                "isobench_status": item.journal.get("status") or "", "run_path": meta.get("run_path") or "",
                "human_commit": item.commits.get("human") or "", "agent_branch": item.journal.get("agent_branch") or "",
                "claude_session_id": item.claude.get("session_id") or ""}
        if item.targets:
            tags["targets_ok"] = str(item.targets.get("ok")).lower()
        config = {k: v for k, v in {"prompt": item.prompt, "agent": item.agent_block,
                                    "experiment": item.journal.get("experiment")}.items() if v}
        started = RunStarted(
            agent=item.agent or "", model=item.model(), task_id=item.task_id, prompt=prompt,
            prompt_sha256=hashlib.sha256(prompt.encode()).hexdigest() if prompt else "",
            repo=repo, base_commit=item.commits.get("pre") or "", config=config,
            tags={k: str(v) for k, v in tags.items() if v}, source=SOURCE,
            command=[str(item.agent_block["cli"])] if item.agent_block.get("cli") else [],
        )
        key = f"isobench:{meta.get('run_path') or ''}/{path.name}:{stat_key(path)}"
        sink = ctx.new_run(key, started, started_ts)
        if sink is None:
            return
        _Writer(sink, item, started_ts, end_ts, ctx.repo).write()


class _Writer:
    def __init__(self, sink: RunSink, item: _Item, started_ts: int, end_ts: int | None, repo: Path | None):
        self.sink, self.item, self.ts, self.end_ts, self.repo = sink, item, started_ts, end_ts, repo
        self.part = 0

    def emit(self, event: Event, part: int | None = None, ts: int | None = None) -> None:
        self.sink.append(event, part=part, ts=ts if ts is not None else self.ts)

    def write(self) -> None:
        item, sink = self.item, self.sink
        for f in item.files:
            if file_kind(f.name) not in KNOWN["*"]:
                sink.unknown(f"{item.path.name}/{f.name}", f"file/{f.name}")
            data = f.read_bytes()
            try:
                inline, blob, _ = sink.text(data.decode())
                self.emit(RawRecorded(source=SOURCE, text=inline, blob=blob, location=f.name))
            except UnicodeDecodeError:
                self.emit(RawRecorded(source=SOURCE, data=data, location=f.name))
        base_tree = self._base_tree()
        outcome = None
        if item.traj:
            count_unknown(item.traj, sink, f"{item.path.name}/trajectory.json")
            outcome = write_trajectory(item.traj, self.emit, sink.text, source=SOURCE)
            self.part = outcome.parts
        if item.claude:
            self._claude()
        for stream, path in (("stdout", item.stdout), ("stderr", item.stderr)):
            if path is not None:
                self._lines(stream, path)
        self._patch(base_tree)
        self._end(outcome)

    def _base_tree(self) -> str:
        pre = self.item.commits.get("pre")
        if self.repo is None or not pre:
            return ""
        git = self.sink.trees.git
        try:
            commit = git.fetch_commit(self.repo, pre, history=False)  # the base's tree is all it needs
        except GitStoreError as exc:
            self.sink.bad(f"{self.item.path.name}/journal.json", f"base commit {pre} is not in --repo {self.repo}: "
                          f"{exc}; the final tree cannot be reconstructed")
            return ""
        tree = git.tree_of(commit)
        kept, left = self.sink.trees.stored(tree)
        snap = git.commit_tree(kept, None, f"base {pre}")
        self.emit(SnapshotTaken(tree_id=kept, commit_id=snap, excluded=left,
                                policy={"source": f"--repo {self.repo} @ {pre}", **self.sink.trees.policy}))
        return tree

    def _claude(self) -> None:
        c = self.item.claude
        self.part += 1
        n = self.part
        model = self.item.model()
        from ..usage import token_count

        for name, mu in (c.get("modelUsage") or {}).items():
            mu = mu or {}
            u = Usage(input=token_count(mu.get("inputTokens")), output=token_count(mu.get("outputTokens")),
                      cache_read=token_count(mu.get("cacheReadInputTokens")),
                      cache_write=token_count(mu.get("cacheCreationInputTokens")))
            self.emit(UsageReported(usage=u, model=name, cost_usd=mu.get("costUSD"), request_id=c.get("uuid") or ""),
                      part=n)
        if not c.get("modelUsage") and isinstance(c.get("usage"), dict):
            from ..usage import usage_from_anthropic

            self.emit(UsageReported(usage=usage_from_anthropic(c["usage"]), model=model,
                                    cost_usd=c.get("total_cost_usd")), part=n)
        inline, blob, _ = self.sink.text(str(c.get("result") or ""))
        self.emit(MessageAdded(role="assistant", text=inline, text_blob=blob, model=model,
                               message_id=c.get("uuid") or ""), part=n)
        self.emit(PartEnded(part_kind="message", title=" ".join(str(c.get("result") or "").split())[:80]), part=n)

    def _lines(self, stream: str, path: Path) -> None:
        text = path.read_text(errors="replace")
        for line in text.splitlines():
            self.emit(LineLogged(stream=stream, text=line))
        if stream == "stdout" and self.item.agent == "codex_cli" and text.strip():
            self.part += 1  # codex exec prints only the final message on stdout
            inline, blob, _ = self.sink.text(text.strip())
            self.emit(MessageAdded(role="assistant", text=inline, text_blob=blob, model=self.item.model()),
                      part=self.part)
            self.emit(PartEnded(part_kind="message", title=" ".join(text.split())[:80]), part=self.part)

    def _patch(self, base_tree: str) -> None:
        item = self.item
        changes = parse_patch_files(item.patch) if item.patch.strip() else []
        if not changes and not item.patch.strip():
            for p in (item.targets.get("changed") or []) if not item.has_patch_source else []:
                self.emit(FileChanged(path=p, change="modify", origin="agent"))
            if not base_tree:
                return
        tree = ""
        if base_tree:
            try:
                tree = self.sink.trees.git.apply_patch(base_tree, item.patch) if item.patch.strip() else base_tree
            except GitStoreError as exc:
                self.sink.bad(f"{item.path.name}/model_patch.diff", f"does not apply to {item.commits.get('pre')}: "
                              f"{exc}")
        if not changes and not tree:
            return
        self.part += 1
        n = self.part
        for ch in changes:
            self.emit(ch, part=n)
        snap = None
        if tree:  # the patch applies to the base as it is; both are recorded as snapshots record trees
            git = self.sink.trees.git
            tree, left = self.sink.trees.stored(tree)
            diff = git.diff(self.sink.trees.stored(base_tree)[0], tree)
            commit = git.commit_tree(tree, git.head, "final: base + model_patch.diff")
            snap = SnapshotTaken(tree_id=tree, commit_id=commit, excluded=left,
                                 added=[c.path for c in diff if c.status == "added"],
                                 modified=[c.path for c in diff if c.status == "modified"],
                                 deleted=[c.path for c in diff if c.status == "deleted"],
                                 lines_added=sum(c.lines_added for c in diff),
                                 lines_removed=sum(c.lines_removed for c in diff),
                                 policy={"source": "base commit + model_patch.diff", **self.sink.trees.policy},
                                 final=True)
            self.emit(snap, part=n, ts=self.end_ts)
        added = sum(c.lines_added or 0 for c in changes)
        removed = sum(c.lines_removed or 0 for c in changes)
        title = f"model_patch.diff: {len(changes)} files +{added} -{removed}"
        self.emit(PartEnded(part_kind="patch", title=title, tree_id=tree), part=n, ts=self.end_ts)
        if tree:
            self.sink.trees.git.write_bundle(self.sink.dir / "bundles" / f"0001-{self.sink.trees.git.head[:12]}.bundle")

    def _end(self, outcome) -> None:
        """Status from evidence, in order: the trajectory's model calls and result; Claude's
        ``is_error``/``subtype``; the exit code; the journal's own error; an empty patch."""
        item, journal = self.item, self.item.journal
        code = item.agent_block.get("returncode")
        code = code if isinstance(code, int) else None
        if journal.get("error"):
            self.emit(ErrorOccurred(message=str(journal["error"]), origin="agent",
                                    error_type=str(journal.get("error_type") or "")), ts=self.end_ts)
        if outcome is not None:
            status, reason = outcome.status(item.traj)
        elif item.claude:
            sub = str(item.claude.get("subtype") or "")
            if item.claude.get("is_error") or sub.startswith("error"):
                status = "limit" if sub == "error_max_turns" else "failed"
                reason = f"claude reported {sub or 'an error'}: {str(item.claude.get('result') or '')[:300]}"
            else:
                status, reason = "completed", ""
        elif code is not None and code != 0:
            status, reason = "failed", f"agent exited with code {code}"
        elif journal:
            status, reason = "completed", ""
        else:
            self.emit(ErrorOccurred(message=f"{item.path.name} has no journal.json: how the run ended is unknown",
                                    origin="import"))
            return
        if status == "completed" and journal.get("status") == "max_steps_exceeded":
            status, reason = "limit", "ISO-Bench reported max_steps_exceeded"
        if status == "completed" and item.has_patch_source and not item.patch.strip():
            status, reason = "failed", "the agent produced an empty patch (no file changed)"
        self.emit(RunEnded(status=status, reason=reason, exit_code=code), ts=self.end_ts)


register(IsoBenchImporter())
