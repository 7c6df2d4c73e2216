"""Snapshots taken inside a sandbox and brought into the run's local shadow repository.

When a part ends (the agent's process group is frozen by the capture pipeline meanwhile), the
workdir is snapshotted *inside the sandbox* into a shadow repository with its own GIT_DIR
(``git add -A && git write-tree``, the same byte-exact configuration, the policy's excludes and
size limit, the workdir's ``.gitignore`` and ``.git/info/exclude``, and the same credential
rules: names as git pathspecs, contents with ``git grep -E`` of the files that changed), the new objects come back as
an incremental git bundle and are fetched into the run's local ``repo.git``. So when
:meth:`RemoteSnapshotter.take` returns, the tree is readable locally, and the local snapshot
chain, ``snapshot_taken`` events and sealed bundles are exactly those of a local capture.

Trees are git trees of the same bytes, so a tree id taken in the sandbox equals the one a local
snapshot of the same files gives. One difference: a nested repository is recorded by git as a
gitlink (locally: its files).
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from agtrace.eventlog import (
    Excluded,
    GitStoreError,
    SnapshotTaken,
    credential_rules,
    json_name,
    value_patterns,
)

from ..snapshot import ShadowSnapshotter, SnapshotPolicy
from .api import SandboxAPI, run_checked

SHADOW = "shadow.git"

REPACK_EVERY = 8
"""Bundles imported between two geometric repacks of the local shadow repository
(`GitStore.repack_imported`): a repack costs a git process, so it is paid once in this many parts."""

_INIT = r"""
set -e
env -u GIT_WORK_TREE -u GIT_DIR git init -q --bare "$GIT_DIR"
git config core.bare false
for kv in core.autocrlf=false core.safecrlf=false core.filemode=true core.symlinks=true \
          core.ignorecase=false core.precomposeunicode=false core.logAllRefUpdates=false gc.auto=0; do
  git config "${kv%%=*}" "${kv#*=}"
done
mkdir -p "$GIT_DIR/info" "$AGT_SCRATCH/bundles"
printf '* -text !eol -ident -filter !working-tree-encoding\n' > "$GIT_DIR/info/attributes"
git config core.attributesFile "$GIT_DIR/info/attributes"
printf '%s\n' "$AGT_EXCLUDES" > "$GIT_DIR/info/exclude"
if [ -f "$GIT_WORK_TREE/.git/info/exclude" ]; then cat "$GIT_WORK_TREE/.git/info/exclude" >> "$GIT_DIR/info/exclude"; fi
"""

_TAKE = r"""
set -e
cd "$GIT_WORK_TREE"
big=$(find . -path ./.git -prune -o -type f -size +"$AGT_MAX_BYTES"c -printf '%s %P\n' 2>/dev/null || true)
: > "$AGT_SCRATCH/size-exclude"
if [ -n "$big" ]; then printf '%s\n' "$big" | cut -d' ' -f2- | sed 's|^|/|' > "$AGT_SCRATCH/size-exclude"; fi
git -c core.excludesFile="$AGT_SCRATCH/size-exclude" add -A .
if [ -n "$big" ]; then printf '%s\n' "$big" | cut -d' ' -f2- | while IFS= read -r p; do
  git rm -q --cached --ignore-unmatch -- "$p" >/dev/null; done; fi
parent=$(git rev-parse -q --verify refs/agtrace/snapshots || true)
creds=
if [ -n "$AGT_CRED_NAMES" ]; then
  specs=(); tspecs=(); content=()
  while IFS= read -r p; do [ -n "$p" ] && specs+=(":(glob)**/$p"); done <<< "$AGT_CRED_NAMES"
  while IFS= read -r p; do [ -n "$p" ] && tspecs+=(":(glob)**/$p"); done <<< "$AGT_TOKEN_FILES"
  while IFS= read -r c; do [ -n "$c" ] && content+=(-e "$c"); done <<< "$AGT_CRED_CONTENT"
  # the secret values, their forms and chunks: files written once (too many for argv or an env var)
  values="$AGT_SCRATCH/cred-values" chunks="$AGT_SCRATCH/cred-chunks" forms="$AGT_SCRATCH/cred-base64"
  base=${parent:-$(git hash-object -t tree /dev/null)}
  changed=$(git -c core.quotePath=false diff-index --cached --name-only --diff-filter=AMT "$base" --)
  creds=$( {
    git -c core.quotePath=false ls-files --cached -- "${specs[@]}" | sed 's/^/credential /'
    if [ -n "$changed" ]; then
      printf '%s\n' "$changed" | tr '\n' '\0' | xargs -0 env LC_ALL=C git -c core.quotePath=false grep --cached -l -a -E \
        "${content[@]}" -- 2>/dev/null | sed 's/^/credential_content /' || true
      if [ -s "$values" ]; then
        printf '%s\n' "$changed" | tr '\n' '\0' | xargs -0 env LC_ALL=C git -c core.quotePath=false grep --cached -l -a \
          -F -f "$values" -- 2>/dev/null | sed 's/^/credential_content /' || true
      fi
      if [ -s "$chunks" ]; then  # a piece of a base64 form: a form once the lines are joined?
        printf '%s\n' "$changed" | tr '\n' '\0' | xargs -0 env LC_ALL=C git -c core.quotePath=false grep --cached -l -a \
          -F -f "$chunks" -- 2>/dev/null | while IFS= read -r f; do
            if git cat-file blob ":$f" | tr -d '\r\n' | LC_ALL=C grep -q -a -F -f "$forms"; then
              echo "credential_content $f"; fi; done || true
      fi
    fi
    LC_ALL=C git -c core.quotePath=false grep --cached -l -a -E -e "$AGT_TOKEN_CONTENT" -- "${tspecs[@]}" 2>/dev/null \
      | sed 's/^/credential_content /' || true
  } | awk '!seen[substr($0, index($0, " ") + 1)]++' )
  if [ -n "$creds" ]; then printf '%s\n' "$creds" | while IFS= read -r line; do
    git rm -q --cached --ignore-unmatch -- "${line#* }" >/dev/null; done; fi
fi
tree=$(git write-tree)
if [ -n "$parent" ] && [ "$(git rev-parse "$parent^{tree}")" = "$tree" ]; then
  echo "same $tree $parent"
else
  commit=$(git commit-tree "$tree" ${parent:+-p "$parent"} -m "$AGT_LABEL")
  git update-ref refs/agtrace/snapshots "$commit"
  git bundle create -q "$AGT_SCRATCH/bundles/$AGT_N.bundle" refs/agtrace/snapshots ${parent:+"^$parent"}
  echo "new $tree $commit"
fi
if [ -n "$big" ]; then printf '%s\n' "$big" | sed 's/^/big /'; fi
if [ -n "$creds" ]; then printf '%s\n' "$creds" | while IFS= read -r line; do
  f=${line#* }; printf '%s %s %s\n' "${line%% *}" "$(stat -c %s -- "$f" 2>/dev/null || echo 0)" "$f"; done; fi
"""


def _credential_env(enabled: bool) -> dict[str, str]:
    """The credential rules for the sandbox's script (the local snapshot's own, as git sees them)."""
    if not enabled:
        return {"AGT_CRED_NAMES": ""}
    rules = credential_rules()
    return {"AGT_CRED_NAMES": "\n".join(rules["names"]), "AGT_CRED_CONTENT": "\n".join(rules["content"]),
            "AGT_TOKEN_FILES": "\n".join(rules["token_files"]), "AGT_TOKEN_CONTENT": rules["token_content"]}


def _credential_files(secrets: tuple[str, ...]) -> dict[str, str]:
    """The secret values a file may not hold (the policy's: values of the agent's own environment,
    which the sandbox has already), as the script's pattern files (``grep -f``: hundreds of long
    values give more than an environment variable or a command line may hold): each value and its
    encoded forms; the chunks of the base64 forms, and the forms, for base64 wrapped over lines."""
    values, forms, chunks = value_patterns(secrets)
    return {"cred-values": "\n".join(values), "cred-chunks": "\n".join(chunks), "cred-base64": "\n".join(forms)}


class RemoteSnapshotter(ShadowSnapshotter):
    """Takes snapshots inside the sandbox into the run's local shadow repository (see the module
    docstring); satisfies :class:`~agtrace.capture.port.SnapshotPort`."""

    def __init__(self, api: SandboxAPI, run_dir: str | Path, policy: SnapshotPolicy | None = None):
        super().__init__(run_dir, policy)
        self.api = api
        self.workdir = api.workdir  # a path inside the sandbox (agents report paths under it)
        self._n = 0
        self._imported = 0  # bundles imported since the last repack
        self._no_geometric = False  # a mid-run repack failed (git < 2.32): not tried again
        self.env = {
            "GIT_DIR": f"{api.scratch}/{SHADOW}", "GIT_WORK_TREE": api.workdir,
            "GIT_INDEX_FILE": f"{api.scratch}/{SHADOW}.index", "AGT_SCRATCH": api.scratch,
            "GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": "/dev/null", "GIT_TERMINAL_PROMPT": "0",
            "GIT_AUTHOR_NAME": "agtrace", "GIT_AUTHOR_EMAIL": "agtrace@localhost",
            "GIT_COMMITTER_NAME": "agtrace", "GIT_COMMITTER_EMAIL": "agtrace@localhost",
            "AGT_EXCLUDES": "\n".join(self.policy.exclude), "AGT_MAX_BYTES": str(self.policy.max_file_bytes),
            **_credential_env(self.policy.credentials),
        }
        run_checked(api, _INIT, self.env, "creating the shadow repository in the sandbox")
        for name, patterns in _credential_files(self.policy.secrets if self.policy.credentials else ()).items():
            api.write_file(f"{api.scratch}/{name}", patterns.encode())

    def take(self, label: str, *, part_ended_ts: int | None = None, final: bool = False) -> SnapshotTaken:
        """Snapshot the sandbox's workdir now and fetch the new objects; raises ``SandboxError``
        (or the sandbox's own error) when the sandbox cannot do it."""
        started = time.perf_counter()
        self._n += 1
        out = run_checked(self.api, _TAKE, {**self.env, "AGT_LABEL": label, "AGT_N": str(self._n)},
                          f"snapshot {label!r} in the sandbox")
        lines = out.splitlines()
        state, tree, _remote_commit = lines[0].split()
        excluded = []
        for line in lines[1:]:
            kind, size, path = line.split(" ", 2)
            excluded.append(Excluded(path=json_name(path), reason="size" if kind == "big" else kind, size=int(size)))
        excluded.sort(key=lambda e: (e.path, e.reason, e.size))
        if state == "new":
            bundle = f"{self.api.scratch}/bundles/{self._n}.bundle"
            with tempfile.TemporaryDirectory(prefix="agtrace-bundle-") as tmp:
                local = Path(tmp) / "snap.bundle"
                local.write_bytes(self.api.read_file(bundle))
                self.git.import_bundle(local)
            self._imported += 1
        previous = self.tree_id
        if tree != previous:
            self.commit_id = self.git.commit_tree(tree, self.commit_id, label)
        changes = self.git.diff(previous, tree) if tree != previous else []
        self.tree_id = tree
        by = {"added": [], "modified": [], "deleted": []}
        for c in changes:
            by[c.status].append(json_name(c.path))
        if final or self._imported >= REPACK_EVERY:
            self._repack(final)
        return SnapshotTaken(
            tree_id=tree, commit_id=self.commit_id or "", added=by["added"], modified=by["modified"],
            deleted=by["deleted"], lines_added=sum(c.lines_added for c in changes),
            lines_removed=sum(c.lines_removed for c in changes), excluded=excluded,
            policy={**self.policy.as_dict(), "sandbox": True}, part_ended_ts=part_ended_ts,
            duration_ms=round((time.perf_counter() - started) * 1000, 3), final=final, detector="walk",
        )

    def _repack(self, final: bool) -> None:
        """Roll the imported packs up (one pack after the final snapshot). A git that cannot
        (older than 2.32 has no ``--geometric``) leaves them as they are: the snapshots are
        readable either way, only more packs are searched. After a mid-run repack failed, the
        run's other mid-run repacks are not tried (each would be one more failing git process
        while the agent is frozen); the final one still is (``-a`` is older than git 2.32)."""
        self._imported = 0
        if self._no_geometric and not final:
            return
        try:
            self.git.repack_imported(final=final)
        except GitStoreError:
            self._no_geometric = self._no_geometric or not final
