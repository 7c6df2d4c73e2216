"""agtrace.eventlog: the append-only, compressed, crash-safe store of agent runs.

Imports nothing else of agtrace. See ``docs/python-api.md`` for a tour and ``docs/format.md``
for the on-disk format.
"""

from .blobs import BlobStore
from .catalog import Catalog
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
from .store import RunInfo, Store, VerifyReport, status_of
from .sync import PullReport, PushReport, RemoteShipper, pull, push
from .testresult import (
    TEST_FILE_FORMATS,
    TEST_OUTPUT_FORMATS,
    TestSummary,
    parse_test_file,
    parse_test_output,
)
from .writer import DURABILITY, Ack, RunWriter

__all__ = [
    "DURABILITY", "END_STATUSES", "EVENT_TYPES", "KINDS", "Ack", "AmbiguousRunId", "AnyEvent",
    "BlobStore", "Catalog", "CommandResult", "CorruptBlob", "CorruptLog", "ErrorOccurred", "Event", "EventlogError",
    "Excluded", "FileChanged", "GitStoreError", "HeartbeatSent", "InvalidEvent", "LineLogged",
    "MessageAdded", "ModelCalled", "PartEnded", "RawRecorded", "ReasoningAdded", "Record",
    "RunClosed", "RunEnded", "RunInfo", "RunLocked", "RunNotFound", "RunStarted", "RunWriter",
    "Scored", "SnapshotTaken", "Store", "StoreError", "TestCase", "TestsRan", "ToolCalled",
    "ToolReturned", "TurnEnded", "TurnStarted", "UnknownEvent", "Usage", "UsageReported",
    "VerifyReport", "derived_run_id", "event_from_json", "kind_of", "new_run_id", "read_stream", "record_to_json",
    "status_of", "tail", "to_builtins",
    "FileRemote", "ObjectInfo", "PutResult", "Remote", "RemoteAuthError", "RemoteConflict",
    "RemoteError", "RemoteNotFound", "RemoteUnreachable", "remote_for",
    "PullReport", "PushReport", "RemoteShipper", "pull", "push",
    "TEST_FILE_FORMATS", "TEST_OUTPUT_FORMATS", "TestSummary", "UnreadableResult",
    "parse_test_file", "parse_test_output",
]
