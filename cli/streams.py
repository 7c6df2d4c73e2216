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
* Closed streams (``>&-``, ``<&-``, ``2>&-``): the descriptor is held open on ``/dev/null``,
  so no file agtrace opens (a segment, the catalog) can take it and receive another's output,
  and a child process inherits something harmless. A closed standard output refuses the first
  write with "cannot write the output: standard output is closed" (exit 1); a closed standard
  input reads as not a terminal, and :func:`stdin_closed` says it was closed.
* Control characters in what a command prints (an OSC, a CSI, BEL) are shown as ``\\x1b``, not
  handed to the terminal (:class:`_Shown`); ``cat`` prints a file as it is (:func:`write_verbatim`).
"""

from __future__ import annotations

import codecs
import io
import os
import re
import sys

from .errors import EXIT_BAD_INPUT, EXIT_FAILED, UserError

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


class _ClosedOutput(io.TextIOBase):
    """Standard output that was closed when agtrace started: the first write says so."""

    encoding = "utf-8"

    def writable(self) -> bool:
        return True

    def isatty(self) -> bool:
        return False

    def fileno(self) -> int:
        return 1  # /dev/null, held by prepare()

    def write(self, text: str) -> int:
        raise UserError("cannot write the output: standard output is closed; run the command with its output "
                        "going to a terminal, a file or a pipe (`>/dev/null` to discard it)", EXIT_FAILED)

    @property
    def buffer(self):
        return self

    def flush(self) -> None:
        pass


class _ClosedInput(io.TextIOBase):
    """Standard input that was closed when agtrace started: not a terminal, nothing to read."""

    encoding = "utf-8"

    def readable(self) -> bool:
        return True

    def isatty(self) -> bool:
        return False

    def fileno(self) -> int:
        return 0  # /dev/null, held by prepare()

    def read(self, size: int = -1):
        raise UserError("standard input is closed; pipe the input in", EXIT_BAD_INPUT)

    readline = read

    @property
    def buffer(self):
        return self


def prepare() -> None:
    """Make the standard streams safe (see the module docstring). Idempotent; a stream that is
    not the process's own (a test harness's) is left as it is, but for its encoding errors."""
    closed = [fd for fd in (0, 1, 2) if not _is_open(fd)]
    for fd in closed:
        _hold_on_devnull(fd)
    if 0 in closed:
        sys.stdin = _ClosedInput()
    if 1 in closed:
        sys.stdout = _ClosedOutput()
    elif _is_process_stream(sys.stdout, 1):
        sys.stdout = _stdout_wrapper(sys.stdout)
    if 2 in closed:
        sys.stderr = io.TextIOWrapper(io.FileIO(2, "w", closefd=False), encoding="utf-8", line_buffering=True)
    elif sys.stderr is not None and not _is_utf8(sys.stderr):
        _safe_encoding(sys.stderr)


def stdin_closed() -> bool:
    """Whether standard input was closed when agtrace started (``<&-``)."""
    return sys.stdin is None or isinstance(sys.stdin, _ClosedInput)


def json_text(encoded: bytes) -> str:
    """JSON bytes (UTF-8, from msgspec) as the text to write on standard output: as they are
    when it is UTF-8, else with every non-ASCII character as a ``\\u`` escape (valid JSON in
    any ASCII-compatible encoding, and the same data). DEL and the C1 controls, which JSON
    encoders leave raw, are ``\\u`` escapes too, so no terminal takes them as commands."""
    text = encoded.decode()
    if encoded.isascii() or _is_utf8(sys.stdout):
        return _JSON_CONTROL.sub(_escape, text) if _JSON_CONTROL.search(text) else text
    return _NON_ASCII.sub(_escape, text)


_NON_ASCII = re.compile(r"[^\x00-\x7f]")
_JSON_CONTROL = re.compile("[\x7f-\x9f]")


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


def _is_open(fd: int) -> bool:
    try:
        os.fstat(fd)
    except OSError:
        return False
    return True


def _hold_on_devnull(fd: int) -> None:
    held = os.open(os.devnull, os.O_RDONLY if fd == 0 else os.O_WRONLY)
    if held != fd:
        os.dup2(held, fd)
        os.close(held)
    os.set_inheritable(fd, True)


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


_CONTROL = re.compile("\x1b(?!\\[[0-9;]*m)|[\x00-\x08\x0b\x0c\x0e-\x1a\x1c-\x1f\x7f-\x9f]")
"""Characters a terminal takes as commands (ESC starting an OSC that sets the title or writes the
clipboard, a CSI that moves the cursor; BEL, NUL, C1 controls): everything below U+0020 but
tab, newline and carriage return, DEL, and U+0080..U+009F; but not an ESC that starts a colour
(SGR, ``ESC [ 1;32 m``: what ``diff`` and the transcript colour with, and can do no more)."""


def _shown(match: re.Match) -> str:
    return f"\\x{ord(match.group()):02x}"


class _Shown(io.TextIOWrapper):
    """Standard output that shows control characters as ``\\x1b`` instead of handing them to the
    terminal: run data are hostile, and an agent's output, a tool result or a note printed by
    ``log``, ``scores`` or the transcript could otherwise retitle the terminal, move its cursor
    over what was printed, or write the clipboard (OSC 52). JSON output is unchanged (its
    encoder escapes them already). :meth:`verbatim` writes text as it is (``cat``: a file's
    content, which the user asked for)."""

    def write(self, text: str) -> int:
        super().write(_CONTROL.sub(_shown, text) if _CONTROL.search(text) else text)
        return len(text)

    def verbatim(self, text: str) -> int:
        return super().write(text)


def write_verbatim(text: str) -> None:
    """Write ``text`` to standard output as it is, control characters included (see :class:`_Shown`)."""
    getattr(sys.stdout, "verbatim", sys.stdout.write)(text)


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
    return _Shown(binary, encoding=encoding, errors=errors, line_buffering=stream.line_buffering,
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
