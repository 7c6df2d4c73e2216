"""Run the real agent CLIs offline against the scripted model server.

Design
------
The CLIs run in a private network namespace that only has loopback
(``unshare -n`` as root, then ``ip link set lo up``).  The model server must
live in the *same* namespace (a server outside it is unreachable), so one
``unshare -n`` runs this module's ``inner`` entry point, which

1. starts the scripted model server (in-process thread) on 127.0.0.1:0,
2. writes the CLI's config under a private HOME (no telemetry, no update
   checks, no plugin/MCP downloads, provider pointed at the server),
3. runs the CLI (optionally wrapped, e.g. ``agtrace run ... --``) with
   stdout captured to a file, and
4. writes a JSON result (exit code, duration, script progress, URL).

From outside::

    python tests/agents/run_cli.py session --cli codex --out /tmp/x

or from Python: :func:`run_session_in_netns`.

Everything needed to build the command line is in :func:`cli_command`
(argv + env) and :func:`prepare_home` (config files).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import model_server  # noqa: E402

AGENTS_DIR = Path(os.environ.get("AGTRACE_AGENTS_DIR", "/tmp/agtrace-agents"))
BIN = AGENTS_DIR / "node_modules" / ".bin"

EXECUTABLES = {"codex": "codex", "claude-code": "claude", "opencode": "opencode"}
PACKAGES = {"codex": "@openai/codex", "claude-code": "@anthropic-ai/claude-code",
            "opencode": "opencode-ai"}


def pinned_versions() -> dict[str, list[str]]:
    """``{cli: [newest, older, ...]}`` from versions.txt (the version matrix)."""
    short = {pkg: cli for cli, pkg in PACKAGES.items()}
    out: dict[str, list[str]] = {cli: [] for cli in PACKAGES}
    for line in (HERE / "versions.txt").read_text().splitlines():
        fields = line.split("#", 1)[0].split()
        if len(fields) >= 2 and fields[0] in short:
            out[short[fields[0]]].append(fields[1])
    return out


def bin_dir(cli: str, version: str = "") -> Path:
    """Where the CLI's executable is: the newest pinned version in AGENTS_DIR, an older one
    of the matrix in AGENTS_DIR/v/<cli>@<version> (see install.sh)."""
    newest = pinned_versions()[cli][:1]
    if not version or [version] == newest:
        return BIN
    return AGENTS_DIR / "v" / f"{cli}@{version}" / "node_modules" / ".bin"

# Model names: Codex only offers its apply_patch tool for models of its own
# catalog; the others accept any name for a custom provider.
CODEX_MODEL = "gpt-5.5"
# older Codex releases do not know gpt-5.5 and offer it no apply_patch tool
CODEX_MODEL_OF = {"0.66.0": os.environ.get("AGTRACE_TEST_CODEX_OLD_MODEL", "gpt-5-codex")}
CLAUDE_MODEL = "claude-sonnet-4-5"
OPENCODE_PROVIDER = "scripted"
OPENCODE_MODEL = "scripted-model"

DUMMY_KEY = "sk-scripted-dummy"


def executable(cli: str, version: str = "") -> Path:
    return bin_dir(cli, version) / EXECUTABLES[cli]


def netns_prefix() -> list[str]:
    """argv prefix running a command in a fresh network namespace with only lo up.

    Needs root (or unprivileged user namespaces: ``unshare -rn`` would also
    work, but then files are owned by a mapped uid).
    """
    return ["unshare", "-n", "--", "sh", "-c", 'ip link set lo up && exec "$@"', "sh"]


def netns_ok() -> bool:
    if not shutil.which("unshare") or not shutil.which("ip"):
        return False
    try:
        r = subprocess.run([*netns_prefix(), sys.executable, "-c",
                            "import socket;s=socket.socket();s.bind(('127.0.0.1',0));s.listen();"
                            "socket.create_connection(s.getsockname(),timeout=2)"],
                           capture_output=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return r.returncode == 0


def available(cli: str, version: str = "") -> tuple[bool, str]:
    """(ok, reason): is the pinned CLI (``version`` of the matrix, default the newest)
    installed and can we sandbox it?"""
    exe = executable(cli, version)
    if not exe.exists():
        return False, f"{exe} missing (run tests/agents/install.sh)"
    if not netns_ok():
        return False, "cannot create a network namespace with loopback (need root + unshare)"
    # --version inside the namespace too, with a throwaway HOME
    with tempfile.TemporaryDirectory(prefix="agtrace-cli-home-") as home:
        try:
            r = subprocess.run([*netns_prefix(), str(exe), "--version"], capture_output=True,
                               timeout=60, env=base_env(Path(home), exe.parent),
                               stdin=subprocess.DEVNULL)
        except (OSError, subprocess.TimeoutExpired) as e:
            return False, f"{exe} --version failed: {e}"
    if r.returncode != 0:
        return False, f"{exe} --version exit {r.returncode}: {r.stderr[-300:]!r}"
    return True, r.stdout.decode().strip()


def base_env(home: Path, bin_path: Path = BIN) -> dict[str, str]:
    """A minimal environment: private HOME, no proxies, no inherited keys. PYTHONPATH is
    kept, so that a wrapper (``agtrace run``) runs the code under test, not an installed one."""
    path = os.pathsep.join([str(Path(sys.executable).parent), str(bin_path),
                            "/usr/local/bin", "/usr/bin", "/bin", "/usr/sbin", "/sbin"])
    env = {
        "HOME": str(home),
        "PATH": path,
        "LANG": "C.UTF-8",
        "TERM": "dumb",
        "NO_COLOR": "1",
        "TMPDIR": os.environ.get("TMPDIR", "/tmp"),
        "XDG_CONFIG_HOME": str(home / ".config"),
        "XDG_DATA_HOME": str(home / ".local" / "share"),
        "XDG_CACHE_HOME": str(home / ".cache"),
        "XDG_STATE_HOME": str(home / ".local" / "state"),
        "NO_PROXY": "127.0.0.1,localhost",
        "PYTHONDONTWRITEBYTECODE": "1",
        "GIT_AUTHOR_NAME": "agent", "GIT_AUTHOR_EMAIL": "agent@example.invalid",
        "GIT_COMMITTER_NAME": "agent", "GIT_COMMITTER_EMAIL": "agent@example.invalid",
    }
    if os.environ.get("PYTHONPATH"):
        env["PYTHONPATH"] = os.environ["PYTHONPATH"]
    return env


# --------------------------------------------------------------------------
# per-CLI config


def codex_model(version: str = "") -> str:
    return CODEX_MODEL_OF.get(version, CODEX_MODEL)


def _codex_config(server_url: str, version: str = "") -> str:
    return f'''# written by tests/agents/run_cli.py -- offline, scripted provider
model = "{codex_model(version)}"
model_provider = "scripted"
model_reasoning_summary = "auto"
approval_policy = "never"
sandbox_mode = "danger-full-access"
check_for_update_on_startup = false
web_search = "disabled"

[model_providers.scripted]
name = "scripted"
base_url = "{server_url}/v1"
env_key = "SCRIPTED_API_KEY"
wire_api = "responses"
request_max_retries = 0
stream_max_retries = 0
stream_idle_timeout_ms = 60000

[analytics]
enabled = false

[feedback]
enabled = false

[history]
persistence = "none"

# nothing that would download or phone home (plugins, apps/connectors,
# marketplace, skills with MCP deps, in-app updates); fewer extra tools.
[agents]
enabled = false

[features]
plugins = false
remote_plugin = false
plugin_sharing = false
recommended_plugins = false
apps = false
skill_mcp_dependency_install = false
tool_suggest = false
in_app_updates = false
unbounded_connection_retries = false
goals = false
image_generation = false
browser_use = false
browser_use_external = false
computer_use = false
memories = false
'''


def _claude_settings() -> dict[str, Any]:
    return {
        "permissions": {"defaultMode": "bypassPermissions"},
        "autoUpdates": False,
        "includeCoAuthoredBy": False,
        "env": {},
    }


def _opencode_config(server_url: str) -> dict[str, Any]:
    return {
        "$schema": "https://opencode.ai/config.json",
        "autoupdate": False,
        "share": "disabled",
        "snapshot": False,
        "lsp": False,
        "formatter": False,
        "plugin": [],
        "mcp": {},
        "permission": {"edit": "allow", "bash": "allow", "webfetch": "deny"},
        "model": f"{OPENCODE_PROVIDER}/{OPENCODE_MODEL}",
        "small_model": f"{OPENCODE_PROVIDER}/{OPENCODE_MODEL}",
        "enabled_providers": [OPENCODE_PROVIDER],
        "provider": {
            OPENCODE_PROVIDER: {
                "npm": "@ai-sdk/openai-compatible",
                "name": "Scripted",
                "options": {"baseURL": f"{server_url}/v1", "apiKey": DUMMY_KEY},
                "models": {OPENCODE_MODEL: {"name": "Scripted model", "tool_call": True,
                                            "reasoning": True,
                                            "limit": {"context": 200000, "output": 8192}}},
            }
        },
    }


def _opencode_version(version: str = "") -> str:
    pj = bin_dir("opencode", version).parent / "opencode-ai" / "package.json"
    try:
        return json.loads(pj.read_text())["version"]
    except (OSError, ValueError, KeyError):
        return "*"


def prepare_home(cli: str, home: Path, server_url: str, version: str = "") -> None:
    """Write the CLI's config files under ``home``."""
    home.mkdir(parents=True, exist_ok=True)
    if cli == "codex":
        ch = home / ".codex"
        ch.mkdir(parents=True, exist_ok=True)
        (ch / "config.toml").write_text(_codex_config(server_url, version))
    elif cli == "claude-code":
        cd = home / ".claude"
        cd.mkdir(parents=True, exist_ok=True)
        (cd / "settings.json").write_text(json.dumps(_claude_settings(), indent=2))
        # skip onboarding / first-run state
        state = json.dumps({"hasCompletedOnboarding": True, "numStartups": 1,
                            "autoUpdates": False, "bypassPermissionsModeAccepted": True})
        # read from $CLAUDE_CONFIG_DIR/.claude.json (and ~/.claude.json without it)
        (cd / ".claude.json").write_text(state)
        (home / ".claude.json").write_text(state)
    elif cli == "opencode":
        oc = home / ".config" / "opencode"
        oc.mkdir(parents=True, exist_ok=True)
        (oc / "opencode.json").write_text(json.dumps(_opencode_config(server_url), indent=2))
        # OpenCode "installs" @opencode-ai/plugin into every config dir in the
        # background (an npm registry lookup).  It skips that when node_modules
        # exists and package-lock.json already lists every dependency of
        # package.json; no plugin is loaded anyway (--pure, "plugin": []).
        dep = {"@opencode-ai/plugin": _opencode_version(version)}
        (oc / "node_modules").mkdir(exist_ok=True)
        (oc / "package.json").write_text(json.dumps({"dependencies": dep}))
        (oc / "package-lock.json").write_text(json.dumps(
            {"lockfileVersion": 3, "packages": {"": {"dependencies": dep}}}))
    else:
        raise ValueError(cli)


def cli_command(cli: str, workdir: str | os.PathLike[str], server_url: str,
                home: str | os.PathLike[str],
                prompt: str = model_server.TASK_PROMPT,
                version: str = "") -> tuple[list[str], dict[str, str]]:
    """argv and env running ``cli`` (``version`` of the matrix) on ``workdir`` against
    ``server_url``.

    Call :func:`prepare_home` first (writes the config files the env points at).
    """
    home = Path(home)
    workdir = str(workdir)
    env = base_env(home, bin_dir(cli, version))
    exe = str(executable(cli, version))
    if cli == "codex":
        env.update({
            "CODEX_HOME": str(home / ".codex"),
            "SCRIPTED_API_KEY": DUMMY_KEY,
            "CODEX_DISABLE_UPDATE_CHECK": "1",
            "RUST_LOG": os.environ.get("RUST_LOG", "warn"),
        })
        argv = [exe, "exec", "--json", "--skip-git-repo-check",
                "--dangerously-bypass-approvals-and-sandbox", "-C", workdir, prompt]
    elif cli == "claude-code":
        env.update({
            "ANTHROPIC_BASE_URL": server_url,
            "ANTHROPIC_API_KEY": DUMMY_KEY,
            "ANTHROPIC_MODEL": CLAUDE_MODEL,
            "ANTHROPIC_SMALL_FAST_MODEL": CLAUDE_MODEL,
            "ANTHROPIC_DEFAULT_HAIKU_MODEL": CLAUDE_MODEL,
            "IS_SANDBOX": "1",
            "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
            "DISABLE_AUTOUPDATER": "1",
            "DISABLE_TELEMETRY": "1",
            "DISABLE_ERROR_REPORTING": "1",
            "DISABLE_BUG_COMMAND": "1",
            "DISABLE_NON_ESSENTIAL_MODEL_CALLS": "1",
            "CLAUDE_CODE_DISABLE_TERMINAL_TITLE": "1",
            "CLAUDE_CODE_ENABLE_TELEMETRY": "0",
            "CLAUDE_CONFIG_DIR": str(home / ".claude"),
            "MAX_THINKING_TOKENS": "1024",
        })
        argv = [exe, "-p", "--output-format", "stream-json", "--verbose",
                "--dangerously-skip-permissions", "--model", CLAUDE_MODEL, prompt]
    elif cli == "opencode":
        env.update({
            "OPENCODE_CONFIG": str(home / ".config" / "opencode" / "opencode.json"),
            "OPENCODE_DISABLE_AUTOUPDATE": "1",
            "OPENCODE_DISABLE_MODELS_FETCH": "1",
            "OPENCODE_DISABLE_LSP_DOWNLOAD": "1",
            "OPENCODE_DISABLE_DEFAULT_PLUGINS": "1",
            "OPENCODE_DISABLE_SHARE": "1",
            "OPENCODE_DISABLE_CLAUDE_CODE": "1",
            "OPENCODE_DISABLE_TERMINAL_TITLE": "1",
        })
        # --auto and --pure came after 1.2, --dir in 1.2 (older ones run in their cwd, the
        # workdir; the config's permissions allow everything and "plugin": [] keeps plugins out)
        newer = version in ("", *pinned_versions()["opencode"][:1])
        has_dir = newer or tuple(int(x) for x in version.split(".")[:2]) >= (1, 2)
        argv = [exe, "run", "--format", "json", *(["--auto"] if newer else []), "--thinking",
                *(["--pure"] if newer else []), *(["--dir", workdir] if has_dir else []),
                "--title", "scripted session",
                "--model", f"{OPENCODE_PROVIDER}/{OPENCODE_MODEL}", prompt]
    else:
        raise ValueError(cli)
    return argv, env


# --------------------------------------------------------------------------
# running a session (inside the namespace)


def run_session(cli: str, workdir: Path, home: Path, log: Path, stdout_path: Path,
                stderr_path: Path, wrapper: list[str] | None = None,
                timeout: float = 300.0, delay_s: float = 0.0,
                version: str = "", script: str = "session") -> dict[str, Any]:
    """Start the server, run the CLI (optionally behind ``wrapper``) on ``script``'s steps
    (``model_server.script_steps``), stop the server.

    Must already run inside the network namespace. Without a wrapper, OpenCode's own export of
    the session (``opencode export <id>``) is written beside stdout as ``export.json``.
    """
    steps = model_server.script_steps(script, cli, str(workdir), version)
    srv = model_server.start_server(steps, str(log), str(workdir), delay_s)
    try:
        prepare_home(cli, home, srv.url, version)
        argv, env = cli_command(cli, workdir, srv.url, home, version=version)
        full = [*(wrapper or []), *argv]
        t0 = time.monotonic()
        with open(stdout_path, "wb") as out, open(stderr_path, "wb") as err:
            try:
                p = subprocess.run(full, cwd=workdir, env=env, stdout=out, stderr=err,
                                   stdin=subprocess.DEVNULL, timeout=timeout)
                rc: int | None = p.returncode
            except subprocess.TimeoutExpired:
                rc = None
        dt = time.monotonic() - t0
        m = srv.model
        if cli == "opencode" and not wrapper and rc == 0:
            _opencode_export(argv[0], workdir, env, stdout_path, stdout_path.parent / "export.json")
        return {"cli": cli, "version": version, "argv": full, "env": env, "returncode": rc,
                "timed_out": rc is None, "seconds": round(dt, 2), "server_url": srv.url,
                "steps": len(steps), "steps_served": m.index, "main_calls": m.main_calls,
                "side_calls": m.side_calls, "script_finished": m.finished}
    finally:
        srv.shutdown()
        srv.server_close()


def _opencode_export(exe: str, workdir: Path, env: dict[str, str], stdout_path: Path,
                     out: Path) -> None:
    """``opencode export <session>`` of the session the run printed (its first sessionID)."""
    session = ""
    for line in stdout_path.read_text().splitlines():
        try:
            session = json.loads(line).get("sessionID") or ""
        except (ValueError, AttributeError):
            continue
        if session:
            break
    if session:
        with open(out, "wb") as fh:
            subprocess.run([exe, "export", session], cwd=workdir, env=env, stdout=fh,
                           stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL, timeout=120)


def run_session_in_netns(cli: str, out_dir: str | os.PathLike[str],
                         wrapper: list[str] | None = None, timeout: float = 300.0,
                         workdir: str | os.PathLike[str] | None = None,
                         delay_s: float = 0.0, version: str = "",
                         script: str = "session") -> dict[str, Any]:
    """Create the project in ``out_dir/work`` and run the session (``script``) in a namespace.

    Files in out_dir: work/ (the project), home/ (with the session files the CLI wrote),
    requests.jsonl, stdout.jsonl, stderr.txt, result.json, and for OpenCode export.json.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    wd = Path(workdir) if workdir else out / "work"
    if not wd.exists():
        model_server.write_project(wd)
    cmd = [*netns_prefix(), sys.executable, str(Path(__file__).resolve()), "inner", "--cli", cli,
           "--out", str(out), "--workdir", str(wd), "--timeout", str(timeout),
           "--delay", str(delay_s), "--version", version, "--script", script]
    if wrapper:
        cmd += ["--", *wrapper]
    subprocess.run(cmd, check=True, timeout=timeout + 60)
    return json.loads((out / "result.json").read_text())


GOLDEN_DIR = HERE.parent / "golden" / "real"


def capture_golden(cli: str, timeout: float = 300.0) -> dict[str, Any]:
    """Run the session and copy its stdout (and gzipped request log) to tests/golden/real.

    Uses a fixed workdir path (/tmp/agtrace-golden/<cli>/work) so paths in the
    golden files are stable between regenerations.
    """
    import gzip

    out = Path(tempfile.gettempdir()) / "agtrace-golden" / cli
    shutil.rmtree(out, ignore_errors=True)
    res = run_session_in_netns(cli, out, timeout=timeout)
    if res["returncode"] != 0 or not res["script_finished"]:
        raise RuntimeError(f"{cli} session failed: {res}")
    GOLDEN_DIR.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(out / "stdout.jsonl", GOLDEN_DIR / f"{cli}.jsonl")
    with gzip.GzipFile(GOLDEN_DIR / f"{cli}.requests.jsonl.gz", "wb", mtime=0) as g:
        for rec in _slim_requests(out / "requests.jsonl"):
            g.write((json.dumps(rec) + "\n").encode())
    return res


def session_files(cli: str, home: Path) -> list[Path]:
    """The session files the CLI wrote under ``home`` (what ``agtrace import --from`` reads):
    Codex rollouts, Claude Code project transcripts, OpenCode's database (1.2 and later) or its
    JSON storage (older releases)."""
    if cli == "codex":
        return sorted((home / ".codex" / "sessions").rglob("rollout-*.jsonl"))
    if cli == "claude-code":
        return sorted((home / ".claude" / "projects").rglob("*.jsonl"))
    data = home / ".local" / "share" / "opencode"
    if (data / "opencode.db").is_file():
        return [data / "opencode.db"]
    storage = data / "storage"
    return sorted(p for d in ("project", "session", "message", "part")
                  for p in (storage / d).rglob("*.json"))


def capture_matrix_golden(cli: str, version: str, timeout: float = 300.0) -> dict[str, Any]:
    """Run the session with ``version`` of the CLI and keep what it wrote in
    tests/golden/real/<cli>@<version>/: stdout.jsonl (the live stream), requests.jsonl.gz, the
    session files at their paths under home/, and for OpenCode export.json. The workdir path is
    fixed (/tmp/agtrace-golden/<cli>@<version>/work) so regenerations keep the same paths.
    OpenCode's database is copied with ``VACUUM INTO`` (one file, its WAL folded in)."""
    import gzip
    import sqlite3

    name = f"{cli}@{version}"
    out = Path(tempfile.gettempdir()) / "agtrace-golden" / name
    shutil.rmtree(out, ignore_errors=True)
    res = run_session_in_netns(cli, out, timeout=timeout, version=version)
    if res["returncode"] != 0 or not res["script_finished"]:
        raise RuntimeError(f"{name} session failed: {res}")
    dest = GOLDEN_DIR / name
    shutil.rmtree(dest, ignore_errors=True)
    dest.mkdir(parents=True)
    shutil.copyfile(out / "stdout.jsonl", dest / "stdout.jsonl")
    if (out / "export.json").is_file():
        shutil.copyfile(out / "export.json", dest / "export.json")
    for path in session_files(cli, out / "home"):
        target = dest / "home" / path.relative_to(out / "home")
        target.parent.mkdir(parents=True, exist_ok=True)
        if path.suffix == ".db":
            with sqlite3.connect(path) as conn:
                conn.execute("VACUUM INTO ?", [str(target)])
        else:
            shutil.copyfile(path, target)
    with gzip.GzipFile(dest / "requests.jsonl.gz", "wb", mtime=0) as g:
        for rec in _slim_requests(out / "requests.jsonl"):
            g.write((json.dumps(rec) + "\n").encode())
    return res


def _slim_requests(path: Path) -> list[dict[str, Any]]:
    """The request log with repeated big fields (tools, system prompt) kept only once.

    A repeat is replaced by ``{"same_as_seq": N}``.
    """
    import hashlib

    seen: dict[tuple[str, str], int] = {}
    out = []
    for line in path.read_text().splitlines():
        rec = json.loads(line)
        body = rec.get("body")
        if isinstance(body, dict):
            for key in ("tools", "system", "instructions"):
                if key not in body:
                    continue
                h = hashlib.sha256(json.dumps(body[key], sort_keys=True).encode()).hexdigest()
                if (key, h) in seen:
                    body[key] = {"same_as_seq": seen[(key, h)]}
                else:
                    seen[(key, h)] = rec["seq"]
        out.append(rec)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    gp = sub.add_parser("golden", help="capture tests/golden/real/<cli>.jsonl")
    gp.add_argument("--cli", choices=model_server.CLIS, action="append")
    mp = sub.add_parser("matrix-golden",
                        help="capture tests/golden/real/<cli>@<version>/ for the version matrix")
    mp.add_argument("--cli", choices=model_server.CLIS, action="append")
    mp.add_argument("--version", action="append", help="default: every pinned version")
    for name in ("inner", "session"):
        sp = sub.add_parser(name)
        sp.add_argument("--cli", choices=model_server.CLIS, required=True)
        sp.add_argument("--out", required=True)
        sp.add_argument("--workdir", default=None)
        sp.add_argument("--timeout", type=float, default=300.0)
        sp.add_argument("--delay", type=float, default=0.0,
                        help="model think time (s) before each scripted answer")
        sp.add_argument("--version", default="",
                        help="a version of the matrix (versions.txt); default the newest")
        sp.add_argument("--script", choices=model_server.SCRIPTS, default="session",
                        help="the scripted steps (model_server.script_steps)")
        sp.add_argument("wrapper", nargs="*", help="wrapper argv before the CLI (after --)")
    args = ap.parse_args(argv)
    if args.cmd == "golden":
        for cli in args.cli or model_server.CLIS:
            res = capture_golden(cli)
            print(f"{cli}: {res['seconds']}s, {res['steps_served']}/{res['steps']} steps")
        return 0
    if args.cmd == "matrix-golden":
        for cli in args.cli or model_server.CLIS:
            for version in args.version or pinned_versions()[cli]:
                res = capture_matrix_golden(cli, version)
                print(f"{cli}@{version}: {res['seconds']}s, {res['steps_served']}/{res['steps']} steps")
        return 0
    out = Path(args.out)
    if args.cmd == "session":
        res = run_session_in_netns(args.cli, out, args.wrapper or None, args.timeout,
                                   args.workdir, args.delay, args.version, args.script)
        print(json.dumps({k: v for k, v in res.items() if k != "env"}, indent=2))
        return 0 if res["returncode"] == 0 and res["script_finished"] else 1
    out.mkdir(parents=True, exist_ok=True)
    wd = Path(args.workdir) if args.workdir else out / "work"
    if not wd.exists():
        model_server.write_project(wd)
    res = run_session(args.cli, wd, out / "home", out / "requests.jsonl", out / "stdout.jsonl",
                      out / "stderr.txt", args.wrapper or None, args.timeout, args.delay,
                      args.version, args.script)
    (out / "result.json").write_text(json.dumps(res, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
