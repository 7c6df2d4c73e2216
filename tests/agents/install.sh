#!/usr/bin/env bash
# Install the pinned agent CLIs used by tests/test_real_cli.py (the version matrix).
#
# The newest pinned version of each CLI (its first line in versions.txt) installs into
# $AGTRACE_AGENTS_DIR (default /tmp/agtrace-agents), older versions of the matrix each into
# $AGTRACE_AGENTS_DIR/v/<cli>@<version>, all outside the repository, with plain `npm install`
# of the exact versions.  Idempotent: does nothing when the pinned versions are present.
#
#   tests/agents/install.sh            # install all pinned CLIs
#   tests/agents/install.sh codex      # only some (codex|claude-code|opencode)
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
prefix="${AGTRACE_AGENTS_DIR:-/tmp/agtrace-agents}"
mkdir -p "$prefix"
# one install at a time (parallel test workers may ask for the same tool at once)
exec 9>"$prefix/.install.lock"
flock 9

# no telemetry / update noise from npm itself
export npm_config_update_notifier=false npm_config_fund=false npm_config_audit=false

seen=" "
while read -r pkg ver _; do
  [[ -z "${pkg:-}" || "$pkg" == \#* ]] && continue
  short="$pkg"
  case "$pkg" in
    @openai/codex) short=codex ;;
    @anthropic-ai/claude-code) short=claude-code ;;
    opencode-ai) short=opencode ;;
  esac
  if [[ $# -gt 0 ]]; then
    keep=0
    for a in "$@"; do [[ "$a" == "$short" || "$a" == "$pkg" ]] && keep=1; done
    [[ $keep == 1 ]] || continue
  fi
  dir="$prefix"
  if [[ "$seen" == *" $pkg "* ]]; then dir="$prefix/v/$short@$ver"; fi
  seen="$seen$pkg "
  mkdir -p "$dir"
  have=""
  pj="$dir/node_modules/$pkg/package.json"
  if [[ -f "$pj" ]]; then
    have="$(node -p "require('$pj').version" 2>/dev/null || true)"
  fi
  if [[ "$have" == "$ver" ]]; then
    echo "ok: $pkg@$ver already installed in $dir"
    continue
  fi
  [[ -f "$dir/package.json" ]] || echo '{"name":"agtrace-agents","private":true}' > "$dir/package.json"
  echo "installing: $pkg@$ver into $dir"
  (cd "$dir" && npm install --no-audit --no-fund --save-exact "$pkg@$ver")
done < "$here/versions.txt"

# Nothing else is fetched at run time: OpenCode's @ai-sdk/openai-compatible
# provider is bundled in its binary, and run_cli.py pre-seeds OpenCode's config
# dir so its background "@opencode-ai/plugin" install is skipped.
echo "agents in $prefix/node_modules/.bin and $prefix/v/*/node_modules/.bin:"
ls "$prefix/node_modules/.bin" "$prefix"/v/*/node_modules/.bin 2>/dev/null | grep -E '^(codex|claude|opencode)$|:$' || true
