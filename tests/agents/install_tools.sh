#!/usr/bin/env bash
# Install the pinned tools of tools.txt, each in its own environment outside the repository
# (never in the project's own venv): $AGTRACE_TOOLS_DIR/<name> (default /tmp/agtrace-tools).
# A Python tool gets a venv of the Python version it needs (python3.X on PATH, else pyenv's);
# an npm tool gets its own prefix. Idempotent: an environment whose stamp matches is kept.
#
#   tests/agents/install_tools.sh              # all tools
#   tests/agents/install_tools.sh aider harbor # only some
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
prefix="${AGTRACE_TOOLS_DIR:-/tmp/agtrace-tools}"
mkdir -p "$prefix"
# one install at a time (parallel test workers may ask for the same tool at once)
exec 9>"$prefix/.install.lock"
flock 9
export npm_config_update_notifier=false npm_config_fund=false npm_config_audit=false
export PIP_DISABLE_PIP_VERSION_CHECK=1

find_python() {
  local v="$1"
  for cand in "python$v" "$HOME/.pyenv/versions/$v"*/bin/python3 "/root/.pyenv/versions/$v"*/bin/python3; do
    # a pyenv shim exists for every version but runs only the selected ones: try it
    if "$cand" -c 'import sys' >/dev/null 2>&1; then command -v "$cand"; return 0; fi
  done
  return 1
}

while read -r kind name py pkgs; do
  [[ -z "${kind:-}" || "$kind" == \#* ]] && continue
  if [[ $# -gt 0 ]]; then
    keep=0
    for a in "$@"; do [[ "$a" == "$name" ]] && keep=1; done
    [[ $keep == 1 ]] || continue
  fi
  dir="$prefix/$name"
  stamp="$kind $py $pkgs"
  if [[ -f "$dir/.stamp" && "$(cat "$dir/.stamp")" == "$stamp" ]]; then
    echo "ok: $name ($pkgs) in $dir"
    continue
  fi
  rm -rf "$dir"
  if [[ "$kind" == pip ]]; then
    python="$(find_python "$py")" || { echo "skip: $name needs Python $py (not found)" >&2; continue; }
    "$python" -m venv "$dir"
    # shellcheck disable=SC2086
    "$dir/bin/pip" install -q $pkgs
  else
    mkdir -p "$dir"
    echo '{"name":"agtrace-tool","private":true}' > "$dir/package.json"
    # shellcheck disable=SC2086
    (cd "$dir" && npm install --no-audit --no-fund --save-exact $pkgs)
  fi
  echo "$stamp" > "$dir/.stamp"
  echo "installed: $name ($pkgs) in $dir"
done < "$here/tools.txt"
