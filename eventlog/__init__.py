"""agtrace.eventlog: the append-only, compressed, crash-safe store of agent runs.

Imports nothing else of agtrace. See ``docs/python-api.md`` for a tour and ``docs/format.md``
for the on-disk format.

Every public name is exported here and nowhere else is a public import path. The names are
loaded lazily (PEP 562): importing this package costs nothing until a name is used, and a name
imports only the module that defines it, so ``from agtrace.eventlog import Store`` never loads
pygit2 or boto3. :data:`_EXPORTS` maps each name to its module (and, for an alias, the name
there); ``__all__`` and ``dir()`` list them all.
"""

from __future__ import annotations

from importlib import import_module

_EXPORTS: dict[str, str | tuple[str, str]] = {
    "DURABILITY": "writer",
    "END_STATUSES": "events",
    "EVENT_TYPES": "events",
    "GREP_KINDS": "fulltext",
    "INLINE_LIMIT": "blobs",
    "KINDS": "events",
    "SCHEMES": "remotes",
    "SEARCH_KINDS": "fulltext",
    "SNAPSHOT_REF": "git.result",
    "STALE_WITHOUT_HEARTBEAT_S": "catalog",
    "TEST_FILE_FORMATS": "testresult",
    "TEST_OUTPUT_FORMATS": "testresult",
    "TOKEN_TYPES": "metrics",
    "Ack": "writer",
    "AmbiguousRunId": "errors",
    "AnnotationsProjection": "annotation",
    "AnyEvent": "events",
    "BlobStore": "blobs",
    "Catalog": "catalog",
    "CatalogProjection": "catalog",
    "CommandResult": "command",
    "CorruptBlob": "errors",
    "CorruptLog": "errors",
    "CostsProjection": "cost",
    "ErrorOccurred": "events",
    "Event": "events",
    "EventlogError": "errors",
    "Excluded": "events",
    "Exclusion": "git.result",
    "FileChange": "git.result",
    "FileChanged": "events",
    "FileDigest": "remotes.transfer",
    "FileRemote": "remotes.file",
    "GitStore": "git.repository",
    "GitStoreError": "errors",
    "HeartbeatSent": "events",
    "Hit": "fulltext",
    "InvalidEvent": "errors",
    "LineLogged": "events",
    "MessageAdded": "events",
    "MetricsFold": "metrics",
    "MetricsProjection": "metrics_projection",
    "ModelCalled": "events",
    "NoteAdded": "events",
    "ObjectInfo": "remotes.base",
    "PartAttribution": "metrics",
    "PartEnded": "events",
    "PartMetrics": "metrics",
    "Projection": "projection",
    "ProjectionFailure": "projection",
    "PullReport": "sync.pull",
    "PushReport": "sync.push",
    "PutResult": "remotes.base",
    "RawRecorded": "events",
    "ReasoningAdded": "events",
    "Record": "events",
    "Redactor": "redaction",
    "Remote": "remotes.base",
    "RemoteAuthError": "errors",
    "RemoteConflict": "errors",
    "RemoteError": "errors",
    "RemoteNotFound": "errors",
    "RemoteShipper": "sync.shipper",
    "RemoteUnreachable": "errors",
    "RunClosed": "errors",
    "RunCost": "cost",
    "RunEnded": "events",
    "RunInfo": "catalog",
    "RunLocked": "errors",
    "RunMetrics": "metrics",
    "RunNotFound": "errors",
    "RunStarted": "events",
    "RunTagged": "events",
    "RunWriter": "writer",
    "Scored": "events",
    "ScoresProjection": "score",
    "SearchProjection": "fulltext",
    "SnapshotResult": "git.result",
    "SnapshotTaken": "events",
    "Store": "store",
    "StoreError": "errors",
    "SwitchResult": "git.result",
    "TestCase": "events",
    "TestSummary": "testresult",
    "TestsRan": "events",
    "ToolCalled": "events",
    "ToolReturned": "events",
    "TurnEnded": "events",
    "TurnStarted": "events",
    "UnknownEvent": "events",
    "UnreadableResult": "errors",
    "Usage": "events",
    "UsageReported": "events",
    "VerifyReport": "verification",
    "add_note": "annotation",
    "call_costs": "cost",
    "credential_reason": "credential",
    "credential_rules": ("credential", "rules"),
    "default_projections": "store",
    "derived_run_id": "ids",
    "digest_file": "remotes.transfer",
    "event_from_json": "codec",
    "event_schema": ("schema", "generate"),
    "event_to_json": "codec",
    "find_score": "score",
    "fold_metrics": "metrics_projection",
    "grep_runs": "fulltext",
    "is_secret_name": "secret",
    "kind_of": "events",
    "new_run_id": "ids",
    "parse_test_file": "testresult",
    "parse_test_output": "testresult",
    "part_costs": "cost",
    "part_metrics": "metrics_projection",
    "price_usage": "cost",
    "prices_version": "cost",
    "pull": "sync.pull",
    "push": "sync.push",
    "read_stream": "reader",
    "record_to_json": "codec",
    "remote_for": "remotes",
    "remote_run_ids": "sync.keys",
    "run_costs": "cost",
    "run_metrics": "metrics_projection",
    "run_notes": "annotation",
    "runs_metrics": "metrics_projection",
    "score_rows": "score",
    "scored_parts": "score",
    "search": "fulltext",
    "searchable_text": "fulltext",
    "status_of": "catalog",
    "tag_run": "annotation",
    "tail": "reader",
    "to_builtins": "codec",
}

__all__ = list(_EXPORTS)


def __getattr__(name: str) -> object:
    target = _EXPORTS.get(name)
    if target is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    module, attr = (target, name) if isinstance(target, str) else target
    value = getattr(import_module(f".{module}", __name__), attr)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS})
