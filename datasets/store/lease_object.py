"""One small object changed only by conditional writes: the compare-and-swap a writer lease needs.

``read()`` -> (JSON or None, version); ``create(body)`` -> version, or None when the object already exists;
``replace(body, version)`` -> new version, or None when the object is no longer ``version``; ``delete(version)``
removes it only if it is still ``version``; ``version()`` -> the current version or None.

- ``s3://`` (:class:`S3Object`): ``PutObject`` with ``If-None-Match: *`` / ``If-Match: <ETag>`` (AWS S3 and
  compatible servers — MinIO, moto — answer ``412 Precondition Failed`` to the loser); credentials from boto3's
  default chain (environment, ``~/.aws``, the node's IAM role), ``AWS_ENDPOINT_URL`` for a non-AWS server.
- ``memory://`` (:class:`MemoryObject`, fsspec's in-process store, for tests): the same semantics under a process
  lock; the version is the content's hash, so a write by anyone else changes it.
Other schemes have no conditional write here: opening such a store for writing is refused (reading works).
"""

from __future__ import annotations

import hashlib
import json
import threading
from urllib.parse import urlparse

from rtml.datasets.errors import DataError


class S3Object:
    def __init__(self, url: str):
        import boto3

        u = urlparse(url)
        self.url, self.bucket, self.key = url, u.netloc, u.path.lstrip("/")
        self.s3 = boto3.client("s3")

    @staticmethod
    def _precondition_failed(exc) -> bool:
        err = getattr(exc, "response", {}).get("Error", {})
        return err.get("Code") in ("PreconditionFailed", "ConditionalRequestConflict", "412") or \
            getattr(exc, "response", {}).get("ResponseMetadata", {}).get("HTTPStatusCode") in (409, 412)

    def read(self) -> tuple[dict | None, str | None]:
        try:
            got = self.s3.get_object(Bucket=self.bucket, Key=self.key)
        except self.s3.exceptions.NoSuchKey:
            return None, None
        return json.loads(got["Body"].read()), got["ETag"]

    def version(self) -> str | None:
        from botocore.exceptions import ClientError

        try:
            return self.s3.head_object(Bucket=self.bucket, Key=self.key)["ETag"]
        except ClientError as exc:
            if exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") == 404:
                return None
            raise

    def _put(self, body: bytes, **cond) -> str | None:
        from botocore.exceptions import ClientError

        try:
            return self.s3.put_object(Bucket=self.bucket, Key=self.key, Body=body, **cond)["ETag"]
        except ClientError as exc:
            if self._precondition_failed(exc):
                return None
            raise

    def create(self, body: bytes) -> str | None:
        return self._put(body, IfNoneMatch="*")

    def replace(self, body: bytes, version: str) -> str | None:
        return self._put(body, IfMatch=version)

    def delete(self, version: str) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            self.s3.delete_object(Bucket=self.bucket, Key=self.key, IfMatch=version)
        except (ClientError, BotoCoreError):
            pass  # already gone, taken over, or the server is gone: an unreleased lease expires after its TTL


_MEMORY_LOCK = threading.Lock()


class MemoryObject:
    def __init__(self, url: str):
        import fsspec

        self.fs, self.file = fsspec.core.url_to_fs(url)

    def _raw(self) -> bytes | None:
        try:
            return self.fs.cat_file(self.file)
        except FileNotFoundError:
            return None

    @staticmethod
    def _hash(raw: bytes | None) -> str | None:
        return None if raw is None else hashlib.sha256(raw).hexdigest()

    def read(self) -> tuple[dict | None, str | None]:
        raw = self._raw()
        return (None, None) if raw is None else (json.loads(raw), self._hash(raw))

    def version(self) -> str | None:
        return self._hash(self._raw())

    def create(self, body: bytes) -> str | None:
        with _MEMORY_LOCK:
            if self._raw() is not None:
                return None
            self.fs.pipe_file(self.file, body)
            return self._hash(body)

    def replace(self, body: bytes, version: str) -> str | None:
        with _MEMORY_LOCK:
            if self.version() != version:
                return None
            self.fs.pipe_file(self.file, body)
            return self._hash(body)

    def delete(self, version: str) -> None:
        with _MEMORY_LOCK:
            if self.version() == version:
                self.fs.rm_file(self.file)


def lease_object(url: str):
    """The conditional-write object at ``url`` (``s3://`` or ``memory://``), else a :class:`DataError`."""
    scheme = url.split("://", 1)[0]
    if scheme in ("s3", "s3a"):
        return S3Object(url)
    if scheme == "memory":
        return MemoryObject(url)
    raise DataError(url.rsplit("/", 1)[0], "writer lease", "an s3:// or memory:// store to write to (a writer "
                    "lease needs a conditional write; other object stores are read-only here: write locally or to "
                    "S3 and copy)", f"a {scheme}:// store")
