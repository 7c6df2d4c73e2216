"""Remote storage of sealed, immutable objects: one module per URL scheme behind `Remote`.

A remote holds objects under keys that mirror a store's layout (see ``docs/remote.md``)::

    runs/<run id>/events/<first>-<last>.seg      sealed segments
    runs/<run id>/scores/<first>-<last>.seg
    runs/<run id>/bundles/<nnnn>-<tip12>.bundle  snapshot bundles
    runs/<run id>/manifests/<last>-<sha16>.json  what one push put there (written last)
    blobs/<aa>/<sha256>.zst                      content-addressed payloads

Contracts every backend keeps (one contract test suite runs against each, ``tests/test_remote.py``):

* ``put_file`` never replaces an object when ``if_absent`` (always, for agtrace's objects): if
  the key holds the same bytes it answers ``existed``; if it holds other bytes it raises
  :class:`RemoteConflict` and leaves both untouched.
* An upload is verified: the bytes stored are checked against the local file's checksum
  (sha256 kept with the object; MD5 by the server in transit where it supports it).
* ``get_file`` writes a temp file beside ``dest``, checks it (sha256 of the object, then the
  caller's ``verify``), fsyncs it and renames it into place: ``dest`` is whole or absent.
* Every failure of the backend's library is raised as a :class:`RemoteError` whose message says
  what to do next. Nothing of a backend's library leaks past its module.

The interface is in ``base.py``, checksums and verified downloads in ``transfer.py``. Backends
are picked by URL scheme in :data:`SCHEMES`: ``file://DIR`` or a plain path (``file.py``) and
``s3://bucket/prefix`` (``s3.py``, the only module that imports boto3 and botocore). A new
scheme is one module with an ``open_remote(url, **options)`` function and one line in
:data:`SCHEMES`; its module is imported only when a URL of its scheme is opened.
"""

from __future__ import annotations

from importlib import import_module
from urllib.parse import urlparse

from ..errors import RemoteError
from .base import Remote

SCHEMES: dict[str, str] = {
    "": "file",  # a plain path
    "file": "file",
    "s3": "s3",
}
"""URL scheme → the module of this package whose ``open_remote(url, **options)`` opens it."""


def remote_for(url: str, **options) -> Remote:
    """The remote named by ``url``: ``file:///dir`` (or a plain path) or ``s3://bucket/prefix``.

    ``options`` go to the backend (for S3: ``endpoint_url``, ``profile``, ``region``,
    ``multipart_threshold``, ``part_size``, ``conditional``, ``read_timeout``, ``access_key``, ``secret_key``);
    S3 also reads ``AGTRACE_S3_ENDPOINT``, ``AGTRACE_S3_PROFILE`` and ``AGTRACE_S3_TIMEOUT``.
    """
    if not url:
        raise RemoteError("no remote given; pass --remote URL (s3://bucket/prefix or file:///dir) or set AGTRACE_REMOTE")
    scheme = urlparse(url).scheme.lower()
    if scheme not in SCHEMES:
        known = ", ".join(f"{s}://" for s in SCHEMES if s)
        raise RemoteError(f"{url}: unknown remote scheme {scheme!r}; use one of {known} (or a plain directory)")
    try:
        backend = import_module(f".{SCHEMES[scheme]}", __name__)
    except ImportError as exc:
        raise RemoteError(
            f"the {scheme}:// remote needs {exc.name or 'a library that is not installed'} ({exc}); "
            f"install it: pip install 'agtrace[{scheme}]'"
        ) from None
    return backend.open_remote(url, **options)
