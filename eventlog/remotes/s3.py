"""The S3 remote (``s3://bucket/prefix``): the only module of agtrace that imports boto3 and
botocore.

Works with AWS S3 and S3-compatible stores (MinIO, R2, Ceph, moto): the endpoint comes from
the ``endpoint_url`` option or ``AGTRACE_S3_ENDPOINT``, the credentials from the usual AWS chain
or a named profile (``profile`` option or ``AGTRACE_S3_PROFILE``).

Writes never overwrite. Every put is sent with ``If-None-Match: *`` (S3 conditional writes), so
the server refuses it when the key exists; agtrace then compares the object's sha256 (kept as
object metadata ``x-amz-meta-sha256``) with the local file's and answers ``existed`` or raises
:class:`RemoteConflict`. A server that answers ``501 NotImplemented`` to the header is used in
check-then-write mode instead (HEAD, then put): there, two pushers racing on one key can both
write; for content-named keys both write the same bytes, which is harmless.
``conditional=False`` forces that mode.

Checks: single-part puts carry ``Content-MD5`` (the server rejects damaged bytes) and the
returned ETag must equal the local MD5; multipart uploads send ``Content-MD5`` per part and the
final ETag must equal the MD5 of the part MD5s. Downloads are hashed and compared with the
sha256 metadata (or the ETag of a single-part object).

Resume: files over ``multipart_threshold`` go up in ``part_size`` parts. An upload cut short
(killed process, lost network) stays in progress on the server; the next put of the same key
lists the key's in-progress uploads, keeps the parts whose MD5 equals the local file's part,
uploads the rest and completes it (``resumed_parts`` says how many were kept). Downloads resume
from their ``.part`` file with a ranged GET; the full-file sha256 check catches any mix-up.
"""

from __future__ import annotations

import base64
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlparse

import boto3
import botocore.config
import botocore.exceptions

from ..containment import relative_parts
from ..errors import (
    RemoteAuthError,
    RemoteConflict,
    RemoteError,
    RemoteNotFound,
    RemoteUnreachable,
    UnsafePath,
)
from .base import ObjectInfo, PutResult, Remote
from .transfer import FileDigest, digest_file, partial_path, receive

MULTIPART_THRESHOLD = 64 * 1024 * 1024
PART_SIZE = 8 * 1024 * 1024
MIN_PART_SIZE = 5 * 1024 * 1024
_CREDENTIAL_CODES = {
    "InvalidAccessKeyId", "SignatureDoesNotMatch", "ExpiredToken", "InvalidToken",
    "TokenRefreshRequired", "InvalidClientTokenId", "AuthorizationHeaderMalformed",
}
_CONNECTION_ERRORS = (
    botocore.exceptions.EndpointConnectionError,
    botocore.exceptions.ConnectTimeoutError,
    botocore.exceptions.ReadTimeoutError,
    botocore.exceptions.ConnectionClosedError,
    botocore.exceptions.ProxyConnectionError,
)


READ_TIMEOUT = 20.0
"""Seconds to wait for a server's answer (per attempt; ``AGTRACE_S3_TIMEOUT`` overrides): a
server that accepts connections and never answers fails a call after this times the attempts."""


def _read_timeout(given: float | None) -> float:
    """``given``, else ``AGTRACE_S3_TIMEOUT``, else :data:`READ_TIMEOUT`; a positive number of seconds."""
    if given is not None:
        return float(given)
    raw = os.environ.get("AGTRACE_S3_TIMEOUT", "").strip()
    if not raw:
        return READ_TIMEOUT
    try:
        value = float(raw)
    except ValueError:
        value = 0.0
    if not value > 0:
        raise RemoteError(f"AGTRACE_S3_TIMEOUT={raw!r} is not a positive number of seconds; unset it or write e.g. 60")
    return value


def open_remote(url: str, **options) -> S3Remote:
    """``s3://bucket/prefix``; ``options`` are :class:`S3Remote`'s keyword arguments."""
    return S3Remote(url, **options)


class S3Remote(Remote):
    """A bucket and key prefix as a remote. Thread-safe (boto3 clients are)."""

    def __init__(
        self,
        url: str,
        *,
        endpoint_url: str | None = None,
        profile: str | None = None,
        region: str | None = None,
        access_key: str | None = None,
        secret_key: str | None = None,
        multipart_threshold: int = MULTIPART_THRESHOLD,
        part_size: int = PART_SIZE,
        conditional: bool = True,
        connect_timeout: float = 5.0,
        read_timeout: float | None = None,
        max_attempts: int = 3,
    ):
        parsed = urlparse(url)
        if parsed.scheme != "s3" or not parsed.netloc:
            raise RemoteError(f"{url} is not an S3 URL; write s3://bucket/prefix")
        self.bucket = parsed.netloc
        self.prefix = parsed.path.strip("/")
        self.url = f"s3://{self.bucket}/{self.prefix}".rstrip("/")
        self.endpoint_url = endpoint_url or os.environ.get("AGTRACE_S3_ENDPOINT") or None
        self.profile = profile or os.environ.get("AGTRACE_S3_PROFILE") or None
        if part_size < MIN_PART_SIZE:
            raise RemoteError(f"part_size {part_size} is below S3's minimum of {MIN_PART_SIZE} bytes")
        self.part_size = part_size
        self.multipart_threshold = max(multipart_threshold, part_size)
        self.conditional = conditional
        self.read_timeout = _read_timeout(read_timeout)
        self.max_attempts = max_attempts
        try:
            session = boto3.session.Session(profile_name=self.profile)
        except botocore.exceptions.ProfileNotFound:
            raise RemoteAuthError(
                f"AWS profile {self.profile!r} is not configured; check AGTRACE_S3_PROFILE / --profile "
                "and ~/.aws/config"
            ) from None
        region = region or session.region_name or "us-east-1"
        settings = {
            "connect_timeout": connect_timeout,
            "read_timeout": self.read_timeout,
            "retries": {"total_max_attempts": max_attempts, "mode": "standard"},
            "s3": {"addressing_style": "path"} if self.endpoint_url else None,
        }
        try:  # botocore >= 1.36: no default CRC trailers, which some S3-compatible stores reject
            config = botocore.config.Config(
                **settings, request_checksum_calculation="when_required",
                response_checksum_validation="when_required",
            )
        except TypeError:
            config = botocore.config.Config(**settings)
        self._client = session.client(
            "s3", endpoint_url=self.endpoint_url, region_name=region, config=config,
            aws_access_key_id=access_key, aws_secret_access_key=secret_key,
        )

    # -- keys and errors ---------------------------------------------------------------------

    def _key(self, key: str) -> str:
        return f"{self.prefix}/{key}" if self.prefix else key

    def _checked(self, key: str) -> str:
        """``key`` if it is a relative path of visible components (the one path rule,
        ``containment.py``), else RemoteError."""
        try:
            relative_parts(key, "remote key", hidden=False)
        except UnsafePath as exc:
            raise RemoteError(f"{self.describe(key)}: {exc}") from None
        return key

    def _rel(self, full: str) -> str:
        return full[len(self.prefix) + 1 :] if self.prefix else full

    def describe(self, key: str) -> str:
        return f"s3://{self.bucket}/{self._key(key)}"

    @contextmanager
    def _mapped(self, action: str, key: str = ""):
        """Turn every boto3/botocore failure into a RemoteError that says what to do."""
        where = self.describe(key) if key else f"s3://{self.bucket}"
        endpoint = self.endpoint_url or "the AWS S3 endpoint"
        try:
            yield
        except botocore.exceptions.ClientError as exc:
            raise self._client_error(exc, action, where) from None
        except botocore.exceptions.ReadTimeoutError:
            raise RemoteUnreachable(
                f"{endpoint} accepted the connection but did not answer within {self.read_timeout:g} s "
                f"({self.max_attempts} attempt(s)) to {action} {where}; check that the endpoint "
                "(AGTRACE_S3_ENDPOINT) is an S3 server that is up, or raise AGTRACE_S3_TIMEOUT (seconds) on a "
                "slow link. Nothing was changed by the failed call"
            ) from None
        except _CONNECTION_ERRORS as exc:
            raise RemoteUnreachable(
                f"cannot reach {endpoint} to {action} {where}: {exc}; check the network and the endpoint "
                "(AGTRACE_S3_ENDPOINT). Nothing was changed by the failed call"
            ) from None
        except (botocore.exceptions.NoCredentialsError, botocore.exceptions.PartialCredentialsError) as exc:
            raise RemoteAuthError(
                f"no usable AWS credentials to {action} {where} ({exc}); set AWS_ACCESS_KEY_ID and "
                "AWS_SECRET_ACCESS_KEY, or name a profile with AGTRACE_S3_PROFILE"
            ) from None
        except botocore.exceptions.BotoCoreError as exc:
            raise RemoteError(f"could not {action} {where}: {exc}; retry, and check the remote settings") from None

    def _client_error(self, exc: botocore.exceptions.ClientError, action: str, where: str) -> RemoteError:
        err = exc.response.get("Error", {})
        code = str(err.get("Code", ""))
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        message = err.get("Message", "")
        if code == "NoSuchBucket":
            return RemoteNotFound(
                f"bucket {self.bucket!r} does not exist at {self.endpoint_url or 'AWS'}; create it "
                "(`aws s3 mb s3://{0}`) or fix the remote URL".format(self.bucket)
            )
        if code in _CREDENTIAL_CODES:
            return RemoteAuthError(
                f"the remote rejected the credentials ({code}) to {action} {where}; check "
                "AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY or the profile (AGTRACE_S3_PROFILE)"
            )
        if code in ("AccessDenied", "AllAccessDisabled", "403") or status == 403:
            return RemoteAuthError(
                f"access denied to {action} {where}; check the credentials (AWS_ACCESS_KEY_ID / "
                "AGTRACE_S3_PROFILE) and that the identity's policy allows s3:ListBucket, s3:GetObject, "
                "s3:PutObject and s3:AbortMultipartUpload on the bucket"
            )
        return RemoteError(f"could not {action} {where}: {code or status} {message}; retry, or check the remote")

    @staticmethod
    def _code(exc: botocore.exceptions.ClientError) -> tuple[str, int]:
        err = exc.response.get("Error", {})
        return str(err.get("Code", "")), exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)

    # -- reading -----------------------------------------------------------------------------

    def list(self, prefix: str = "") -> list[ObjectInfo]:
        out = []
        with self._mapped("list", prefix):
            pages = self._client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=self._key(prefix))
            for page in pages:
                for obj in page.get("Contents", ()):
                    modified = obj.get("LastModified")
                    out.append(ObjectInfo(self._rel(obj["Key"]), obj["Size"], etag=obj["ETag"].strip('"'),
                                          modified_ns=int(modified.timestamp() * 1e9) if modified else 0))
        return sorted(out, key=lambda o: o.key)

    def head(self, key: str) -> ObjectInfo | None:
        with self._mapped("read", key):
            try:
                resp = self._client.head_object(Bucket=self.bucket, Key=self._key(key))
            except botocore.exceptions.ClientError as exc:
                if self._code(exc)[1] != 404:
                    raise
                resp = None
        if resp is None:
            self._check_bucket()  # a 404 without a body: a missing key, or a missing bucket
            return None
        return ObjectInfo(key, resp["ContentLength"], etag=resp["ETag"].strip('"'),
                          sha256=resp.get("Metadata", {}).get("sha256", ""))

    def _check_bucket(self) -> None:
        with self._mapped("open the bucket"):
            try:
                self._client.head_bucket(Bucket=self.bucket)
            except botocore.exceptions.ClientError as exc:
                if self._code(exc)[1] == 404:
                    raise RemoteNotFound(
                        f"bucket {self.bucket!r} does not exist at {self.endpoint_url or 'AWS'}; create it "
                        "or fix the remote URL"
                    ) from None
                raise

    def matches(self, info: ObjectInfo, digest: FileDigest) -> bool | None:
        if info.size != digest.size:
            return False
        if info.sha256:
            return info.sha256 == digest.sha256
        if info.etag and "-" not in info.etag and digest.md5:
            return info.etag == digest.md5
        if info.etag and digest.part_md5s and info.etag == digest.multipart_etag:
            return True
        return None  # uploaded in other parts, or by another tool: head it for the sha256

    def digest(self, path) -> FileDigest:
        if os.path.getsize(path) > self.multipart_threshold:
            return digest_file(path, self.part_size, md5=False)  # ETag = MD5 of the part MD5s
        return digest_file(path)  # ETag = MD5 of the bytes

    def get_file(self, key, dest, *, sha256="", verify=None, progress=None) -> ObjectInfo:
        key = self._checked(key)
        dest = Path(dest)
        partial = partial_path(dest)
        if partial.exists() and partial.stat().st_size:
            try:
                return self._download(key, dest, partial.stat().st_size, sha256, verify, progress)
            except RemoteError as exc:
                if "does not match" not in str(exc):
                    raise
                # the partial file was not a prefix of this object (receive deleted it): start over
        return self._download(key, dest, 0, sha256, verify, progress)

    def _download(self, key, dest: Path, offset: int, sha256: str, verify, progress) -> ObjectInfo:
        kwargs = {"Bucket": self.bucket, "Key": self._key(key)}
        with self._mapped("download", key):
            try:
                resp = self._client.get_object(**kwargs, **({"Range": f"bytes={offset}-"} if offset else {}))
            except botocore.exceptions.ClientError as exc:
                code, status = self._code(exc)
                if status == 416 or code == "InvalidRange":
                    offset = 0  # receive starts the partial file over, under its claim (never unlinked here:
                    # it may be another pull's download in progress)
                    resp = self._client.get_object(**kwargs)
                elif code in ("NoSuchKey", "404"):
                    raise RemoteNotFound(
                        f"{self.describe(key)} does not exist; `agtrace pull` lists what the remote has"
                    ) from None
                else:
                    raise
            if offset and resp.get("ResponseMetadata", {}).get("HTTPStatusCode") != 206:
                offset = 0  # the server ignored the range: start over
            etag = resp["ETag"].strip('"')
            sha = resp.get("Metadata", {}).get("sha256", "")
            if sha256 and sha and sha != sha256:
                raise RemoteConflict(
                    f"{self.describe(key)} carries sha256 {sha[:16]}… but {sha256[:16]}… was expected; "
                    "the remote copy was replaced. Nothing was written locally"
                )
            got = receive(
                dest, resp["Body"].iter_chunks(1024 * 1024), source=self.describe(key),
                expect_sha256=sha256 or sha, expect_md5=etag if "-" not in etag else "",
                resume_from=partial_path(dest) if offset else None, verify=verify, progress=progress,
            )
        return ObjectInfo(key, got.size, etag=etag, sha256=got.sha256)

    # -- writing -----------------------------------------------------------------------------

    def put_file(self, key, path, *, if_absent=True, digest=None, progress=None) -> PutResult:
        key = self._checked(key)
        if digest is None or (digest.size > self.multipart_threshold and digest.part_size != self.part_size) \
                or (digest.size <= self.multipart_threshold and not digest.md5):
            digest = self.digest(path)
        if if_absent and not self.conditional and self.head(key) is not None:
            return self.existing(key, digest)  # check-then-write: see the module docstring for the race
        if digest.size > self.multipart_threshold:
            return self._put_multipart(key, Path(path), digest, if_absent, progress)
        return self._put_single(key, Path(path), digest, if_absent, progress)

    def _put_single(self, key, path: Path, digest: FileDigest, if_absent: bool, progress) -> PutResult:
        with open(path, "rb") as fh:
            data = fh.read()
        if len(data) != digest.size:
            raise RemoteError(f"{path} changed while being pushed; sealed files must not change — push again")
        kwargs = {
            "Bucket": self.bucket, "Key": self._key(key), "Body": data, "ContentMD5": digest.md5_b64,
            "Metadata": {"sha256": digest.sha256},
        }
        if if_absent and self.conditional:
            kwargs["IfNoneMatch"] = "*"
        with self._mapped("upload", key):
            try:
                resp = self._client.put_object(**kwargs)
            except botocore.exceptions.ClientError as exc:
                code, status = self._code(exc)
                if status == 412 or code == "PreconditionFailed":
                    return self.existing(key, digest)
                if if_absent and (status == 501 or code == "NotImplemented"):
                    self.conditional = False  # this server has no conditional writes
                    return self.put_file(key, path, digest=digest, progress=progress)
                raise
        if resp["ETag"].strip('"') != digest.md5:
            raise RemoteError(
                f"{self.describe(key)}: the server stored bytes whose MD5 differs from the local file's; "
                "the object may be damaged — inspect it before pushing again"
            )
        if progress:
            progress(digest.size)
        return PutResult("uploaded", digest.size)

    def _put_multipart(self, key, path: Path, digest: FileDigest, if_absent: bool, progress) -> PutResult:
        if if_absent and self.head(key) is not None:  # do not send gigabytes to learn it exists
            return self.existing(key, digest)
        full = self._key(key)
        upload_id, kept = self._resumable_upload(key, digest)
        with self._mapped("upload", key):
            if upload_id is None:
                upload_id = self._client.create_multipart_upload(
                    Bucket=self.bucket, Key=full, Metadata={"sha256": digest.sha256}
                )["UploadId"]
            sent = 0
            with open(path, "rb") as fh:
                for number, md5 in enumerate(digest.part_md5s, start=1):
                    if number in kept:
                        if progress:
                            progress(min(self.part_size, digest.size - (number - 1) * self.part_size))
                        continue
                    fh.seek((number - 1) * self.part_size)
                    chunk = fh.read(self.part_size)
                    self._client.upload_part(
                        Bucket=self.bucket, Key=full, UploadId=upload_id, PartNumber=number, Body=chunk,
                        ContentMD5=base64.b64encode(md5).decode(),
                    )
                    sent += len(chunk)
                    if progress:
                        progress(len(chunk))
            parts = [{"PartNumber": n, "ETag": f'"{m.hex()}"'} for n, m in enumerate(digest.part_md5s, start=1)]
            kwargs = {"Bucket": self.bucket, "Key": full, "UploadId": upload_id, "MultipartUpload": {"Parts": parts}}
            if if_absent and self.conditional:
                kwargs["IfNoneMatch"] = "*"
            try:
                resp = self._client.complete_multipart_upload(**kwargs)
            except botocore.exceptions.ClientError as exc:
                code, status = self._code(exc)
                if status == 412 or code == "PreconditionFailed":
                    self._client.abort_multipart_upload(Bucket=self.bucket, Key=full, UploadId=upload_id)
                    return self.existing(key, digest)
                raise
        if resp["ETag"].strip('"') != digest.multipart_etag:
            raise RemoteError(
                f"{self.describe(key)}: the stored object's ETag does not match the local parts; the object "
                "may be damaged — inspect it before pushing again"
            )
        return PutResult("uploaded", sent, resumed_parts=len(kept))

    def _resumable_upload(self, key: str, digest: FileDigest) -> tuple[str | None, set[int]]:
        """The in-progress upload of ``key`` with the most parts equal to the local file's (by
        MD5), and their part numbers; ``(None, set())`` when no upload has one.

        A part that differs is sent again (an upload's part is replaced by the next one of its
        number). A server that does not check ``Content-MD5`` may keep a part cut short by a
        killed client (moto stores a part whatever its ``Content-MD5`` says; S3 refuses it), and
        that one part would otherwise cost the whole upload. Parts past the local file's count
        are left out of the completed object."""
        full = self._key(key)
        best: tuple[str | None, set[int]] = (None, set())
        with self._mapped("list uploads of", key):
            uploads = self._client.list_multipart_uploads(Bucket=self.bucket, Prefix=full).get("Uploads", [])
            for upload in sorted(uploads, key=lambda u: u["Initiated"], reverse=True):
                if upload["Key"] != full:
                    continue
                kept = {part["PartNumber"] for part in self._parts(full, upload["UploadId"])
                        if part["PartNumber"] <= len(digest.part_md5s)
                        and part["ETag"].strip('"') == digest.part_md5s[part["PartNumber"] - 1].hex()}
                if len(kept) > len(best[1]):
                    best = (upload["UploadId"], kept)
        return best

    def _parts(self, full: str, upload_id: str) -> Iterator[dict]:
        pages = self._client.get_paginator("list_parts").paginate(Bucket=self.bucket, Key=full, UploadId=upload_id)
        for page in pages:
            yield from page.get("Parts", ())

    def delete(self, keys: list[str]) -> int:
        removed = 0
        for start in range(0, len(keys), 1000):  # DeleteObjects takes at most 1,000 keys
            chunk = keys[start:start + 1000]
            with self._mapped("delete from", chunk[0] if chunk else ""):
                resp = self._client.delete_objects(
                    Bucket=self.bucket, Delete={"Objects": [{"Key": self._key(k)} for k in chunk], "Quiet": False})
            errors = resp.get("Errors", [])
            if errors:
                first = errors[0]
                raise RemoteError(f"could not delete {self.describe(self._rel(first.get('Key', '')))}: "
                                  f"{first.get('Code', '')} {first.get('Message', '')}; check that the identity "
                                  "may s3:DeleteObject, then run the command again")
            removed += len(resp.get("Deleted", []))
        return removed

    def close(self) -> None:
        self._client.close()

