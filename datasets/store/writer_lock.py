"""One writer at a time per store.

- Local stores (a path): an exclusive ``flock`` on ``STORE/.rtml.lock`` held for the whole append (arrays, then
  the index entry), so writers in any number of processes on the machine take turns.
- Remote stores (``s3://``, ``gs://``, ``memory://``, …: object stores have no locks): a writer *lease*, the object
  ``STORE/.rtml_writer.json`` = {token, host, pid, since, renewed}. Opening a store for writing takes the lease
  or refuses with :class:`StoreBusyError` naming the holder; the lease is renewed at every append and checked again
  just before an entry is committed (a writer that lost it stops instead of racing); ``close()`` (or the end of
  the process) releases it. A lease not renewed for ``LEASE_TTL_S`` belongs to a dead writer and may be taken over.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import time
import uuid
import weakref
from contextlib import contextmanager

from rtml.datasets.errors import DataError

LEASE_TTL_S = 3600.0  # a lease older than this (not renewed by an append) is a dead writer's
LEASE_FILE = ".rtml_writer.json"


class StoreBusyError(DataError):
    """Another writer holds the store."""


def is_remote(path: str) -> bool:
    return "://" in path and not path.startswith("file://")


class LocalLock:
    """``flock`` on ``STORE/.rtml.lock`` for the duration of ``with lock.held():``."""

    def __init__(self, path: str):
        self.file = os.path.join(path, ".rtml.lock")

    @contextmanager
    def held(self):
        with open(self.file, "a") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    def check(self) -> None:
        """Nothing to re-check: the flock is held for the whole append."""

    def close(self) -> None:
        """Nothing held between appends."""


class RemoteLease:
    """The writer lease of a remote store; taken at construction, released by ``close()``/process exit."""

    def __init__(self, path: str, ttl_s: float = LEASE_TTL_S):
        import fsspec

        self.path, self.ttl_s = path, ttl_s
        self.fs, root = fsspec.core.url_to_fs(path)
        self.file = f"{root.rstrip('/')}/{LEASE_FILE}"
        self.token = uuid.uuid4().hex
        self._take()
        self._finalizer = weakref.finalize(self, _release, self.fs, self.file, self.token)

    def _read(self) -> dict | None:
        try:
            with self.fs.open(self.file, "rb") as fh:
                return json.loads(fh.read())
        except FileNotFoundError:
            return None

    def _write(self, since: float) -> None:
        lease = {"token": self.token, "host": socket.gethostname(), "pid": os.getpid(), "since": since,
                 "renewed": time.time()}
        with self.fs.open(self.file, "wb") as fh:
            fh.write(json.dumps(lease).encode())

    def _refuse(self, holder: dict) -> StoreBusyError:
        age = time.time() - holder.get("renewed", 0)
        return StoreBusyError(self.path, "writer", "no other writer (one writer at a time on a remote store; wait "
                              f"for it, or after {self.ttl_s:.0f} s without an append its lease expires)",
                              f"held by {holder.get('host')} pid {holder.get('pid')}, last append {age:.0f} s ago")

    def _take(self) -> None:
        holder = self._read()
        if holder and holder.get("token") != self.token and time.time() - holder.get("renewed", 0) < self.ttl_s:
            raise self._refuse(holder)
        self._write(time.time())
        time.sleep(0.05)  # two writers that both saw a free store: the later write wins, the other sees it
        holder = self._read()
        if not holder or holder.get("token") != self.token:
            raise self._refuse(holder or {})

    @contextmanager
    def held(self):
        """Around one append: the lease must still be ours (checked again before the commit by ``check``)."""
        self.check()
        self._write(self._read().get("since", time.time()))  # renew
        yield

    def check(self) -> None:
        holder = self._read()
        if not holder or holder.get("token") != self.token:
            raise self._refuse(holder or {})

    def close(self) -> None:
        self._finalizer()


def _release(fs, file: str, token: str) -> None:
    try:
        with fs.open(file, "rb") as fh:
            holder = json.loads(fh.read())
        if holder.get("token") == token:
            fs.rm(file)
    except (FileNotFoundError, OSError, ValueError):
        pass  # nothing to release (already gone or taken over)


def writer_lock(path: str):
    """The lock that protects a store opened for writing."""
    return RemoteLease(path) if is_remote(path) else LocalLock(path)
