"""agtrace.eventlog: the append-only, compressed, crash-safe store of agent runs.

Imports nothing else of agtrace. See ``docs/python-api.md`` for a tour and ``docs/format.md``
for the on-disk format.
"""

from .blobs import BlobStore
from .catalog import Catalog, CatalogProjection
from .codec import event_from_json, record_to_json, to_builtins
from .command import CommandResult
from .errors import (
    AmbiguousRunId,
    CorruptBlob,
    CorruptLog,
    EventlogError,
    GitStoreError,
    InvalidEvent,
    RunClosed,
    RunLocked,
    RunNotFound,
    StoreError,
    UnreadableResult,
)
from .events import (
    END_STATUSES,
    EVENT_TYPES,
    KINDS,
    AnyEvent,
    ErrorOccurred,
    Event,
    Excluded,
    FileChanged,
    HeartbeatSent,
    LineLogged,
    MessageAdded,
    ModelCalled,
    PartEnded,
    RawRecorded,
    ReasoningAdded,
    Record,
    RunEnded,
    RunStarted,
    Scored,
    SnapshotTaken,
    TestCase,
    TestsRan,
    ToolCalled,
    ToolReturned,
    TurnEnded,
    TurnStarted,
    UnknownEvent,
    Usage,
    UsageReported,
    kind_of,
)
from .ids import derived_run_id, new_run_id
from .metrics import TOKEN_TYPES, MetricsFold, PartAttribution, PartMetrics, RunMetrics
from .metrics_projection import (
    MetricsProjection,
    fold_metrics,
    part_metrics,
    run_metrics,
    runs_metrics,
)
from .projection import Projection, ProjectionFailure
from .reader import read_stream, tail
from .remote import (
    FileRemote,
    ObjectInfo,
    PutResult,
    Remote,
    RemoteAuthError,
    RemoteConflict,
    RemoteError,
    RemoteNotFound,
    RemoteUnreachable,
    remote_for,
)
from .score import ScoresProjection, find_score, score_rows, scored_parts
from .store import RunInfo, Store, default_projections, status_of
from .sync import PullReport, PushReport, RemoteShipper, pull, push
from .testresult import (
    TEST_FILE_FORMATS,
    TEST_OUTPUT_FORMATS,
    TestSummary,
    parse_test_file,
    parse_test_output,
)
from .verification import VerifyReport
from .writer import DURABILITY, Ack, RunWriter

__all__ = [
    "Ack", "AmbiguousRunId", "AnyEvent", "BlobStore", "Catalog", "CatalogProjection",
    "CommandResult", "CorruptBlob", "CorruptLog", "DURABILITY", "END_STATUSES", "EVENT_TYPES",
    "ErrorOccurred", "Event", "EventlogError", "Excluded", "FileChanged", "FileRemote",
    "GitStoreError", "HeartbeatSent", "InvalidEvent", "KINDS", "LineLogged", "MessageAdded",
    "MetricsFold", "MetricsProjection", "ModelCalled", "ObjectInfo", "PartAttribution",
    "PartEnded", "PartMetrics", "Projection", "ProjectionFailure", "PullReport", "PushReport",
    "PutResult", "RawRecorded", "ReasoningAdded", "Record", "Remote", "RemoteAuthError",
    "RemoteConflict", "RemoteError", "RemoteNotFound", "RemoteShipper", "RemoteUnreachable",
    "RunClosed", "RunEnded", "RunInfo", "RunLocked", "RunMetrics", "RunNotFound", "RunStarted",
    "RunWriter", "Scored", "ScoresProjection", "SnapshotTaken", "Store", "StoreError",
    "TEST_FILE_FORMATS", "TEST_OUTPUT_FORMATS", "TOKEN_TYPES", "TestCase", "TestSummary",
    "TestsRan", "ToolCalled", "ToolReturned", "TurnEnded", "TurnStarted", "UnknownEvent",
    "UnreadableResult", "Usage", "UsageReported", "VerifyReport", "default_projections",
    "derived_run_id", "event_from_json", "find_score", "fold_metrics", "kind_of", "new_run_id",
    "parse_test_file", "parse_test_output", "part_metrics", "pull", "push", "read_stream",
    "record_to_json", "remote_for", "run_metrics", "runs_metrics", "score_rows", "scored_parts",
    "status_of", "tail", "to_builtins",
]
