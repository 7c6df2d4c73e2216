"""Talk to a Phoenix server with its own client; print what it answers as JSON.

Run by the phoenix side venv's Python, inside the receiver's network namespace:

* ``python phoenix_spans.py wait URL SECONDS``: poll ``/healthz`` until the server answers (exit 1
  when it has not within SECONDS).
* ``python phoenix_spans.py spans URL PROJECT '{"TRACE_ID": COUNT, …}' SECONDS``: read each
  trace's spans through ``phoenix.client.Client().spans.get_spans`` until COUNT have been
  ingested (Phoenix ingests asynchronously) or SECONDS passed; print ``{TRACE_ID: [span, …]}``.

Every loop is bounded by its deadline.
"""

import json
import sys
import time
import urllib.request


def wait(url: str, seconds: float) -> int:
    # never through a proxy: the server is on this namespace's loopback
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    deadline = time.monotonic() + seconds
    last = "no answer"
    while time.monotonic() < deadline:
        try:
            with opener.open(url.rstrip("/") + "/healthz", timeout=5) as r:
                if r.status == 200:
                    return 0
                last = f"HTTP {r.status}"
        except OSError as exc:
            last = repr(exc)
        time.sleep(0.25)
    print(f"{url}/healthz did not answer 200 within {seconds:g} s: {last}", file=sys.stderr)
    return 1


def spans(url: str, project: str, counts: dict[str, int], seconds: float) -> int:
    from phoenix.client import Client

    client = Client(base_url=url)
    deadline = time.monotonic() + seconds

    def get(trace_id: str) -> list:
        try:
            return client.spans.get_spans(project_identifier=project, trace_ids=[trace_id],
                                          limit=counts[trace_id] + 100)
        except Exception:  # noqa: BLE001 - the project appears with its first span
            return []

    got = {trace_id: [] for trace_id in counts}
    while time.monotonic() < deadline:
        got = {trace_id: get(trace_id) for trace_id in counts}
        if all(len(got[t]) >= n for t, n in counts.items()):
            time.sleep(0.5)  # ingestion is batched: let a duplicate, if any, land too
            got = {trace_id: get(trace_id) for trace_id in counts}
            break
        time.sleep(0.25)
    print(json.dumps(got))
    return 0


if __name__ == "__main__":
    mode, *args = sys.argv[1:]
    if mode == "wait":
        sys.exit(wait(args[0], float(args[1])))
    sys.exit(spans(args[0], args[1], json.loads(args[2]), float(args[3])))
