"""OTLP on the wire: spans as OTLP/JSON or protobuf, written to a file or sent over OTLP/HTTP.

:func:`export_otlp` is the export (``agtrace export --format otlp``). Contracts:

* **File** (``out``): OTLP JSON lines, one ``ExportTraceServiceRequest`` per line (the format the
  OpenTelemetry Collector's file exporter writes and its ``otlpjsonfile`` receiver reads), in the
  OTLP JSON encoding (hex trace and span ids, enums as numbers, 64-bit integers as strings).
  ``out`` must not exist; the file is written beside it, fsynced and renamed into place. ``out``
  may also be a writable binary stream (``agtrace export -o -``), written as the spans are made.
* **Endpoint**: one OTLP/HTTP ``POST`` per batch of at most :data:`~.otlp.BATCH_SPANS` spans of
  one run, gzip-compressed, ``application/x-protobuf`` (needs ``opentelemetry-proto``: the
  ``otlp`` extra) or ``application/json``. A URL without a path gets ``/v1/traces``. HTTP 429,
  502, 503 and 504 are retried with backoff (``Retry-After`` honoured, at most :data:`RETRIES`
  times), a failed connection :data:`UNREACHABLE_RETRIES` times; any other failure stops the export with the receiver's answer.
  Batches already accepted stay sent; sending again is harmless to receivers that key spans by
  id, since the ids are the same.

``opentelemetry.proto`` (and ``google.protobuf``) are imported here only.
"""

from __future__ import annotations

import gzip
import json
import os
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, BinaryIO

import msgspec

from agtrace.eventlog import CorruptLog, RunNotFound, RunStarted, Store, run_metrics, temp_beside

from .errors import ExportError, OutputNotEmpty
from .export import ExportReport, output_error
from .otlp import (
    BATCH_SPANS,
    MAX_ATTRIBUTE_CHARS,
    OtlpSpan,
    iter_spans,
    resource_attributes,
    trace_id_of,
)

PROTOCOLS = ("protobuf", "json")
CONTENT_TYPES = {"protobuf": "application/x-protobuf", "json": "application/json"}
RETRIES = 5
"""Retries of a request the receiver answered with a retryable status."""
UNREACHABLE_RETRIES = 2
"""Retries of a request that could not connect (a collector restarting, not a wrong port)."""
RETRY_STATUSES = frozenset({429, 502, 503, 504})
SCOPE = "agtrace"
_encode = msgspec.json.Encoder().encode


def export_otlp(
    store: Store,
    run_ids: Iterable[str],
    *,
    out: str | os.PathLike | BinaryIO | None = None,
    endpoint: str | None = None,
    protocol: str = "protobuf",
    headers: dict[str, str] | None = None,
    resource: dict[str, str] | None = None,
    timeout_s: float = 30.0,
    max_attribute_chars: int = MAX_ATTRIBUTE_CHARS,
    progress: Callable[[int, int], None] | None = None,
) -> ExportReport:
    """Export the runs as OTLP traces to the file ``out`` or to ``endpoint``; see the module
    docstring. ``protocol`` is for the endpoint (a file is always JSON); ``headers`` are sent
    with every request (authentication); ``resource`` adds resource attributes (for example
    ``openinference.project.name`` for Phoenix). ``progress(done, total)`` counts runs.

    Raises:
        ExportError: neither or both of ``out`` and ``endpoint``; a bad URL or protocol; the
            receiver refused the spans or cannot be reached.
        OutputNotEmpty: ``out`` already exists.
        RunNotFound: a run id is not in the store.
    """
    started = time.perf_counter()
    if (out is None) == (endpoint is None):
        raise ExportError("an OTLP export goes to a file (-o FILE) or to a collector (--endpoint URL): give one")
    if protocol not in PROTOCOLS:
        raise ExportError(f"unknown OTLP protocol {protocol!r}; use {' or '.join(PROTOCOLS)}")
    run_ids = list(run_ids)
    missing = [r for r in run_ids if not store.has_run(r)]
    if missing:
        raise RunNotFound(f"no run {missing[0]} in {store.root}; `agtrace ls` lists the runs")
    if endpoint is not None:
        url = traces_url(endpoint)
        if protocol == "protobuf":
            _proto()
        report = ExportReport(format="otlp", out=url, runs=len(run_ids))
        for i, run_id in enumerate(run_ids):
            try:
                for trace_id, res, batch in _batches(store, run_id, resource, max_attribute_chars, report):
                    body = (encode_protobuf(trace_id, res, batch) if protocol == "protobuf"
                            else encode_json(trace_id, res, batch))
                    note = post(url, body, CONTENT_TYPES[protocol], headers or {}, timeout_s)
                    report.bytes += len(body)
                    if note:
                        report.notes.append(f"run {run_id}: {note}")
            except CorruptLog as exc:  # batches of it already sent stay sent
                report.add_damaged(store, run_id, exc)
            if progress:
                progress(i + 1, len(run_ids))
    elif callable(getattr(out, "write", None)):
        report = ExportReport(format="otlp", out=str(getattr(out, "name", "<stream>")), runs=len(run_ids), files=1)
        _write_spans(store, run_ids, resource, max_attribute_chars, report, progress, out)
        out.flush()
    else:
        out_str = os.fspath(out)
        if "://" in out_str:
            raise ExportError(f"-o takes a local file; to send the spans to {out_str} use --endpoint")
        dest = Path(out_str).expanduser()
        if dest.exists():
            raise OutputNotEmpty(f"{dest} already exists; an export never overwrites: remove it or pick another -o")
        dest.parent.mkdir(parents=True, exist_ok=True)
        report = ExportReport(format="otlp", out=str(dest), runs=len(run_ids), files=1)
        tmp = temp_beside(dest)  # a killed export's is removed by the next one
        try:
            with open(tmp, "wb") as fh:
                _write_spans(store, run_ids, resource, max_attribute_chars, report, progress, fh)
                fh.flush()
                os.fsync(fh.fileno())
            os.rename(tmp, dest)
        except OSError as exc:
            raise output_error(exc, tmp) from None
        finally:
            tmp.unlink(missing_ok=True)
    report.duration_s = time.perf_counter() - started
    return report


def _write_spans(store: Store, run_ids: list[str], resource, max_chars: int, report: ExportReport, progress,
                 fh: BinaryIO) -> None:
    """The runs' spans as OTLP JSON lines into ``fh``; ``report.bytes`` counts what was written."""
    seekable = fh.seekable() if hasattr(fh, "seekable") else False
    for i, run_id in enumerate(run_ids):
        before = (report.events, report.spans, report.bytes, fh.tell() if seekable else None)
        try:
            for trace_id, res, batch in _batches(store, run_id, resource, max_chars, report):
                line = encode_json(trace_id, res, batch) + b"\n"
                fh.write(line)
                report.bytes += len(line)
        except CorruptLog as exc:  # a damaged run is left out (what of it went to a stream stays)
            report.add_damaged(store, run_id, exc)
            if seekable:
                report.events, report.spans, report.bytes, at = before
                fh.seek(at)
                fh.truncate()
        if progress:
            progress(i + 1, len(run_ids))


def traces_url(endpoint: str) -> str:
    """The OTLP/HTTP traces URL of ``endpoint``: as given, or with ``/v1/traces`` when it has
    no path (``http://127.0.0.1:4318`` → ``http://127.0.0.1:4318/v1/traces``)."""
    parts = urllib.parse.urlsplit(endpoint)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ExportError(f"{endpoint!r} is not an http(s) URL; give the collector's OTLP/HTTP endpoint, "
                          "e.g. http://127.0.0.1:4318")
    if parts.path in ("", "/"):
        parts = parts._replace(path="/v1/traces")
    return urllib.parse.urlunsplit(parts)


def _batches(store: Store, run_id: str, resource: dict[str, str] | None, max_chars: int, report: ExportReport):
    """``(trace id, resource, spans)`` per batch of at most BATCH_SPANS spans, as they complete."""
    start = next(iter(store.read(run_id, 1, 1)), None)
    start = start.event if start is not None and isinstance(start.event, RunStarted) else RunStarted()
    trace_id = trace_id_of(run_id)
    res = resource_attributes(start.agent, start.agent_version, resource)
    report.events += run_metrics(store, run_id).events  # what iter_spans reads
    batch: list[OtlpSpan] = []
    for span in iter_spans(store, run_id, max_attribute_chars=max_chars):
        batch.append(span)
        if len(batch) >= BATCH_SPANS:
            report.spans += len(batch)
            yield trace_id, res, batch
            batch = []
    if batch:
        report.spans += len(batch)
        yield trace_id, res, batch


# -- encodings -------------------------------------------------------------------------------


def encode_json(trace_id: bytes, resource: dict[str, Any], spans: list[OtlpSpan]) -> bytes:
    """One ``ExportTraceServiceRequest`` in the OTLP JSON encoding, on one line."""
    def span(s: OtlpSpan) -> dict:
        d: dict[str, Any] = {"traceId": trace_id.hex(), "spanId": s.span_id.hex()}
        if s.parent_id:
            d["parentSpanId"] = s.parent_id.hex()
        d.update(name=s.name, kind=s.kind, startTimeUnixNano=str(s.start_ns), endTimeUnixNano=str(s.end_ns),
                 attributes=_json_attributes(s.attributes))
        if s.events:
            d["events"] = [{"timeUnixNano": str(ts), "name": name, "attributes": _json_attributes(attrs)}
                           for name, ts, attrs in s.events]
        if s.error is not None:
            d["status"] = {"code": 2, "message": s.error}
        return d

    request = {"resourceSpans": [{"resource": {"attributes": _json_attributes(resource)},
                                  "scopeSpans": [{"scope": {"name": SCOPE}, "spans": [span(s) for s in spans]}]}]}
    return _encode(request)


def _json_attributes(attrs: dict[str, Any]) -> list[dict]:
    return [{"key": k, "value": _json_value(v)} for k, v in attrs.items()]


def _json_value(v: Any) -> dict:
    kind = _JSON_KINDS.get(type(v))
    if kind is not None:
        return {kind: str(v) if kind == "intValue" else v}
    if isinstance(v, (list, tuple)):
        return {"arrayValue": {"values": [_json_value(x) for x in v]}}
    return {"stringValue": str(v)}


_JSON_KINDS = {str: "stringValue", bool: "boolValue", int: "intValue", float: "doubleValue"}
"""AnyValue field by exact type (``bool`` is an ``int`` subclass, so no isinstance here)."""


def _proto():
    try:
        from google.protobuf.message import DecodeError
        from opentelemetry.proto.collector.trace.v1 import trace_service_pb2
        from opentelemetry.proto.trace.v1 import trace_pb2
    except ImportError:
        raise ExportError("OTLP protobuf needs opentelemetry-proto: pip install 'agtrace[otlp]', "
                          "or send JSON with --otlp-protocol json") from None
    return trace_service_pb2, trace_pb2, DecodeError


def encode_protobuf(trace_id: bytes, resource: dict[str, Any], spans: list[OtlpSpan]) -> bytes:
    """One ``ExportTraceServiceRequest`` as protobuf bytes (deterministic serialization)."""
    service, trace, _ = _proto()
    request = service.ExportTraceServiceRequest()
    rs = request.resource_spans.add()
    _pb_attributes(rs.resource.attributes, resource)
    scope_spans = rs.scope_spans.add()
    scope_spans.scope.name = SCOPE
    for s in spans:
        p = scope_spans.spans.add()
        p.trace_id, p.span_id, p.parent_span_id = trace_id, s.span_id, s.parent_id
        p.name, p.kind = s.name, s.kind
        p.start_time_unix_nano, p.end_time_unix_nano = s.start_ns, s.end_ns
        _pb_attributes(p.attributes, s.attributes)
        for name, ts, attrs in s.events:
            e = p.events.add()
            e.name, e.time_unix_nano = name, ts
            _pb_attributes(e.attributes, attrs)
        if s.error is not None:
            p.status.code = trace.Status.STATUS_CODE_ERROR
            p.status.message = s.error
    return request.SerializeToString(deterministic=True)


def _pb_attributes(target, attrs: dict[str, Any]) -> None:
    for k, v in attrs.items():
        kv = target.add()
        kv.key = k
        _pb_value(kv.value, v)


def _pb_value(target, v: Any) -> None:
    if isinstance(v, bool):
        target.bool_value = v
    elif isinstance(v, int):
        target.int_value = v
    elif isinstance(v, float):
        target.double_value = v
    elif isinstance(v, (list, tuple)):
        for x in v:
            _pb_value(target.array_value.values.add(), x)
    else:
        target.string_value = str(v)


# -- transport -------------------------------------------------------------------------------


def post(url: str, body: bytes, content_type: str, headers: dict[str, str], timeout_s: float) -> str:
    """POST one request (gzipped); return a note when the receiver rejected part of it ("" when
    it took everything). Retries as the module docstring says; raises :class:`ExportError`."""
    data = gzip.compress(body, mtime=0)
    request_headers = {"Content-Type": content_type, "Content-Encoding": "gzip", "User-Agent": "agtrace",
                       **headers}
    delay, unreachable = 0.5, 0
    for attempt in range(RETRIES + 1):
        request = urllib.request.Request(url, data=data, method="POST", headers=request_headers)
        try:
            with urllib.request.urlopen(request, timeout=timeout_s) as response:
                return _partial_success(response.read(), response.headers.get("Content-Type", ""))
        except urllib.error.HTTPError as exc:
            answer = exc.read()[:500].decode(errors="replace").strip()
            if exc.code in RETRY_STATUSES and attempt < RETRIES:
                delay = _retry_after(exc.headers.get("Retry-After"), delay)
            else:
                hint = "; check --header (credentials)" if exc.code in (401, 403) else ""
                raise ExportError(f"{url} refused the spans: HTTP {exc.code} {exc.reason}"
                                  f"{': ' + answer if answer else ''}{hint}") from None
        except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
            unreachable += 1
            if unreachable > UNREACHABLE_RETRIES or attempt >= RETRIES:
                reason = getattr(exc, "reason", exc)
                raise ExportError(f"cannot reach {url}: {reason}; is the collector running, and is "
                                  "this its OTLP/HTTP endpoint?") from None
        time.sleep(delay)
        delay = min(delay * 2, 30.0)
    raise AssertionError("unreachable")


def _retry_after(value: str | None, default: float) -> float:
    try:
        return min(max(float(value), 0.0), 30.0) if value else default
    except ValueError:
        return default


def _partial_success(body: bytes, content_type: str) -> str:
    if not body:
        return ""
    rejected, message = 0, ""
    if "json" in content_type:
        try:
            partial = json.loads(body).get("partialSuccess") or {}
        except (ValueError, AttributeError):
            return ""
        rejected, message = int(partial.get("rejectedSpans") or 0), partial.get("errorMessage") or ""
    elif "protobuf" in content_type:
        try:
            service, _, decode_error = _proto()
        except ExportError:
            return ""
        response = service.ExportTraceServiceResponse()
        try:
            response.ParseFromString(body)
        except decode_error:
            return ""
        rejected, message = response.partial_success.rejected_spans, response.partial_success.error_message
    if not (rejected or message):
        return ""
    return f"the receiver rejected {rejected} span(s)" + (f": {message}" if message else "")


__all__ = ["CONTENT_TYPES", "PROTOCOLS", "encode_json", "encode_protobuf", "export_otlp", "post", "traces_url"]
