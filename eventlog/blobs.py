"""Content-addressed blob store for large payloads (tool outputs, raw records).

A blob is addressed by the sha256 of its *uncompressed* content and stored zstd-compressed at
``blobs/<first two hex>/<sha256>.zst``. Writing is idempotent (a repeat of the same content
writes nothing) and atomic (temp file, fsync, rename). Reading verifies the hash.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Iterator
from pathlib import Path

import zstandard

from .containment import content_address, is_content_address
from .errors import CorruptBlob
from .segment import zstd_contexts

INLINE_LIMIT = 64 * 1024
"""Texts longer than this (in UTF-8 bytes) go to the blob store; events keep a prefix."""

PREFIX_CHARS = 2048
"""How much of a blobbed text an event keeps inline, for people and search."""

_CHUNK = 1024 * 1024


class BlobStore:
    """A directory of content-addressed, compressed blobs."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)

    def path(self, digest: str) -> Path:
        """Where the blob ``digest`` lives; UnsafePath unless ``digest`` is a content address
        (the one path rule, ``containment.py``)."""
        digest = content_address(digest)
        return self.root / digest[:2] / f"{digest}.zst"

    def put(self, data: bytes) -> str:
        """Store ``data``; return its sha256 hex. Durable when it returns. A blob stored before
        gets a new modification time, so ``gc`` sees it as recent (it may be named again)."""
        digest = hashlib.sha256(data).hexdigest()
        dest = self.path(digest)
        if dest.exists():
            try:
                os.utime(dest)
                return digest
            except FileNotFoundError:
                pass  # removed meanwhile: written again below
            except OSError:
                return digest  # not ours to touch (a shared store): it is there
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_name(f".{digest}.{os.getpid()}.{threading.get_ident()}.tmp")
        with open(tmp, "wb") as fh:
            fh.write(zstd_contexts.compressor.compress(data))
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, dest)
        return digest

    def get(self, digest: str) -> bytes:
        """The content of a blob, verified against its address."""
        path = self.path(digest)
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            raise CorruptBlob(
                f"blob {digest} is missing from {self.root}; pull the run again from its remote",
                str(path),
            ) from None
        try:
            data = zstd_contexts.decompressor.decompress(raw)
        except zstandard.ZstdError as exc:
            raise CorruptBlob(f"blob {digest} at {path} does not decompress: {exc}", str(path)) from None
        if hashlib.sha256(data).hexdigest() != digest:
            raise CorruptBlob(f"blob {digest} at {path} does not match its hash", str(path))
        return data

    def check(self, digest: str, path: str | os.PathLike | None = None) -> None:
        """Check that the blob ``digest`` (or the file ``path`` holding it, e.g. a download not
        yet in place) decompresses to content of that sha256; else :class:`CorruptBlob`.

        Streams, in bounded memory: a small file may decompress to gigabytes (a hostile remote's
        "zip bomb" whose content hashes to the address a segment names), which :meth:`get` would
        hold whole."""
        where = Path(path) if path is not None else self.path(digest)
        sha = hashlib.sha256()
        try:
            with open(where, "rb") as fh, zstd_contexts.decompressor.stream_reader(fh, read_size=_CHUNK) as reader:
                while chunk := reader.read(_CHUNK):
                    sha.update(chunk)
        except FileNotFoundError:
            raise CorruptBlob(
                f"blob {digest} is missing from {self.root}; pull the run again from its remote", str(where)
            ) from None
        except zstandard.ZstdError as exc:
            raise CorruptBlob(f"blob {digest} at {where} does not decompress: {exc}", str(where)) from None
        if sha.hexdigest() != digest:
            raise CorruptBlob(f"blob {digest} at {where} does not match its hash", str(where))

    def has(self, digest: str) -> bool:
        """True if the blob is stored (False for anything that is not a content address)."""
        return is_content_address(digest) and self.path(digest).exists()

    def digests(self) -> Iterator[str]:
        if not self.root.exists():
            return
        for sub in sorted(self.root.iterdir()):
            for f in sorted(sub.glob("*.zst")):
                if is_content_address(f.name[:-4]):
                    yield f.name[:-4]

    def inline_or_put(self, text: str) -> tuple[str, str, int]:
        """Keep ``text`` inline, or store it and keep a prefix: ``(inline, digest, nbytes)``.

        ``digest`` is "" when the text was small enough to inline whole.
        """
        if len(text) * 4 <= INLINE_LIMIT:
            return text, "", len(text.encode())
        data = text.encode()
        if len(data) <= INLINE_LIMIT:
            return text, "", len(data)
        return text[:PREFIX_CHARS], self.put(data), len(data)
