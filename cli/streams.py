"""The standard streams, made fit for the CLI once, before a command writes or reads anything
(:func:`prepare`, called by ``main``).

* Any terminal encoding: on a stream whose encoding is not UTF-8 (an ISO-8859-1 locale,
  ``PYTHONIOENCODING=latin-1``), a character it cannot encode is written as an ASCII fallback
  (``…`` as ``...``, ``→`` as ``->``) or as a backslash escape (``\\u4e2d``), never an error. An
  ASCII stream is taken for a misconfigured one and written as UTF-8, as click's ``echo`` does
  (and Python does in the C locale), so that every write of a command has one encoding. JSON
  written through :func:`json_text` stays valid JSON in any encoding: its non-ASCII characters
  are ``\\u`` escapes when standard output is not UTF-8.
* Standard output's own failures are told apart from the store's: an ``OSError`` raised writing
  to descriptor 1 (its reader gone, ``> /dev/full``) carries :data:`STDOUT_FAILED` as an
  attribute, whichever writer raised it (click, ``sys.stdout.write``, ``csv``, rich).
"""

from __future__ import annotations

import codecs
import io
import re
import sys

STDOUT_FAILED = "agtrace_stdout_failed"
"""The attribute set (True) on an ``OSError`` raised writing standard output."""

ERRORS = "agtrace-fallback"
"""The codec error handler of a stream that is not UTF-8 (see :func:`_fallback`)."""

_ASCII_FALLBACKS = {
    "…": "...", "·": ".", "←": "<-", "→": "->", "↔": "<->", "─": "-", "━": "-", "—": "--", "–": "-",
    "‘": "'", "’": "'", "“": '"', "”": '"', "•": "*", "✓": "ok", "✗": "x", "×": "x", "≤": "<=", "≥": ">=",
}
"""The characters agtrace itself prints, written so where the terminal cannot show them."""


def _fallback(exc: UnicodeError) -> tuple[str, int]:
    if not isinstance(exc, UnicodeEncodeError):
        raise exc
    text = exc.object[exc.start:exc.end]
    return "".join(_ASCII_FALLBACKS.get(c) or c.encode("ascii", "backslashreplace").decode() for c in text), exc.end


codecs.register_error(ERRORS, _fallback)


class _StdoutFile(io.FileIO):
    """Descriptor 1, raising its write errors marked with :data:`STDOUT_FAILED`."""

    def write(self, data) -> int | None:
        try:
            return super().write(data)
        except OSError as exc:
            setattr(exc, STDOUT_FAILED, True)
            raise


def prepare() -> None:
    """Make the standard streams safe (see the module docstring). Idempotent; a stream that is
    not the process's own (a test harness's) is left as it is, but for its encoding errors."""
    if _is_process_stream(sys.stdout, 1):
        sys.stdout = _stdout_wrapper(sys.stdout)
    if sys.stderr is not None and not _is_utf8(sys.stderr):
        _safe_encoding(sys.stderr)


def json_text(encoded: bytes) -> str:
    """JSON bytes (UTF-8, from msgspec) as the text to write on standard output: as they are
    when it is UTF-8, else with every non-ASCII character as a ``\\u`` escape (valid JSON in
    any ASCII-compatible encoding, and the same data)."""
    text = encoded.decode()
    if encoded.isascii() or _is_utf8(sys.stdout):
        return text
    return _NON_ASCII.sub(_escape, text)


_NON_ASCII = re.compile(r"[^\x00-\x7f]")


def _escape(match: re.Match) -> str:
    code = ord(match.group())
    if code < 0x10000:
        return f"\\u{code:04x}"
    code -= 0x10000
    return f"\\u{0xD800 + (code >> 10):04x}\\u{0xDC00 + (code & 0x3FF):04x}"


def _is_utf8(stream) -> bool:
    try:
        return codecs.lookup(getattr(stream, "encoding", None) or "utf-8").name == "utf-8"
    except LookupError:
        return False


def _is_ascii(stream) -> bool:
    try:
        return codecs.lookup(getattr(stream, "encoding", None) or "ascii").name == "ascii"
    except LookupError:
        return False


def _is_process_stream(stream, fd: int) -> bool:
    """Whether ``stream`` is Python's own text stream on descriptor ``fd`` (not a harness's)."""
    if not isinstance(stream, io.TextIOWrapper):
        return False
    if isinstance(getattr(stream.buffer, "raw", stream.buffer), _StdoutFile):
        return False  # prepared already
    try:
        return stream.fileno() == fd
    except (OSError, ValueError):
        return False


def _stdout_wrapper(stream: io.TextIOWrapper) -> io.TextIOWrapper:
    """A text stream on descriptor 1 like ``stream`` (its encoding made safe), over
    :class:`_StdoutFile`. Nothing has been written to ``stream`` yet (it is flushed anyway)."""
    stream.flush()
    if _is_utf8(stream) or _is_ascii(stream):
        encoding, errors = "utf-8", stream.errors
    else:
        encoding, errors = stream.encoding, ERRORS
    raw = _StdoutFile(1, "w", closefd=False)
    binary = raw if isinstance(stream.buffer, io.RawIOBase) else io.BufferedWriter(raw)  # python -u: unbuffered
    return io.TextIOWrapper(binary, encoding=encoding, errors=errors, line_buffering=stream.line_buffering,
                            write_through=stream.write_through)


def _safe_encoding(stream) -> None:
    reconfigure = getattr(stream, "reconfigure", None)
    if reconfigure is None:
        return
    try:
        stream.flush()
        reconfigure(**({"encoding": "utf-8"} if _is_ascii(stream) else {"errors": ERRORS}))
    except (OSError, ValueError):
        pass
