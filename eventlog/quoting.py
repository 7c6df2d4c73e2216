"""How a file name of a workdir is shown, when its bytes are not plain text.

A POSIX file name is bytes: any but ``/`` and NUL. agtrace records and replays those bytes
exactly (the git trees hold them); in Python a name is a ``str`` decoded as the OS does
(``os.fsdecode``: a byte that is not UTF-8 becomes a lone surrogate, U+DC80–U+DCFF), which no
UTF-8 text, JSON or event can hold, and a name may hold a newline or an escape sequence, which
would break a line of text output or reach the terminal. Two functions show such names, both
in git's quoted form (``core.quotePath``, without its quoting of non-ASCII letters):

* :func:`quote_name`, for text output: a name holding a control character (U+0000–U+001F,
  U+007F–U+009F), a byte that is not UTF-8, or starting with ``"`` is written between double
  quotes, with ``\\a \\b \\t \\n \\v \\f \\r \\" \\\\`` and, for every other such byte, a
  backslash and its three octal digits (``"bad\\377name"``, ``"a\\nb"``, ``"e\\033[31mred"``);
  any other name is written as it is (``a\\b`` too);
* :func:`json_name`, for events and ``--json``: a name that is valid UTF-8 is kept as it is
  (control characters are JSON's to escape); one that is not is written quoted as above.

:func:`unquote_name` reads the quoted form back (``cat RUN PATH`` takes either form). Normative
copy in ``docs/format.md`` ("File names that are not text").
"""

from __future__ import annotations

import os

_SHORT = {"\a": "a", "\b": "b", "\t": "t", "\n": "n", "\v": "v", "\f": "f", "\r": "r", '"': '"', "\\": "\\"}
_BACK = {v: k for k, v in _SHORT.items()}


def _special(ch: str) -> bool:
    o = ord(ch)
    return o < 0x20 or 0x7F <= o <= 0x9F or 0xD800 <= o <= 0xDFFF


def not_text(name: str) -> bool:
    """True when ``name`` is not UTF-8 text (it holds a surrogate: ``os.fsdecode`` of bytes that
    are not UTF-8). On the snapshot's path per changed name: the codec answers, not a loop."""
    if name.isascii():
        return False
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:  # only a surrogate cannot be encoded
        return True
    return False


def _quoted(name: str) -> str:
    out = ['"']
    for ch in name:
        if ch in _SHORT:
            out.append("\\" + _SHORT[ch])
        elif _special(ch):
            raw = os.fsencode(ch) if 0xDC80 <= ord(ch) <= 0xDCFF else ch.encode("utf-8", "surrogatepass")
            out.extend(f"\\{b:03o}" for b in raw)
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def quote_name(name: str) -> str:
    """``name`` for a line of text output (see the module docstring)."""
    if name.startswith('"') or any(_special(ch) for ch in name):
        return _quoted(name)
    return name


def json_name(name: str) -> str:
    """``name`` as a UTF-8 text for an event or ``--json`` (see the module docstring)."""
    return _quoted(name) if not_text(name) else name


def unquote_name(text: str) -> str | None:
    """The name that :func:`quote_name` showed as ``text``, or None when ``text`` is not in the
    quoted form (it does not start and end with ``"``, or an escape in it is not one of ours)."""
    if len(text) < 2 or not (text.startswith('"') and text.endswith('"')):
        return None
    body, raw, i = text[1:-1], bytearray(), 0
    while i < len(body):
        ch = body[i]
        if ch == '"':
            return None
        if ch != "\\":
            raw += ch.encode("utf-8", "surrogateescape")
            i += 1
            continue
        nxt = body[i + 1:i + 2]
        if nxt in _BACK:
            raw += _BACK[nxt].encode()
            i += 2
        elif len(body) >= i + 4 and all(c in "01234567" for c in body[i + 1:i + 4]) and body[i + 1] in "0123":
            raw.append(int(body[i + 1:i + 4], 8))
            i += 4
        else:
            return None
    return os.fsdecode(bytes(raw))


def json_safe(value):
    """A copy of ``value`` (built of dicts, lists, tuples and scalars) in which every string that
    is not valid UTF-8 text is replaced by :func:`json_name` of it (the others are kept)."""
    if isinstance(value, str):
        return json_name(value)
    if isinstance(value, dict):
        return {json_safe(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value
