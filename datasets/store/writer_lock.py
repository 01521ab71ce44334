"""One writer at a time per store.

- Local stores (a path): an exclusive ``flock`` on ``STORE/.rtml.lock`` held for the whole append (arrays, then
  the index entry), so writers in any number of processes on the machine take turns.
- Object stores (``s3://``, ``memory://``; object stores have no locks): a writer *lease*, the object
  ``STORE/.rtml_writer.json`` = {token, host, pid, since, renewed}, changed only by **conditional writes**
  (:mod:`.lease_object`: S3 ``If-None-Match: *`` to take a free store, ``If-Match: <ETag>`` to renew, take over or
  release): of two writers racing for a store exactly one wins, with no sleep-and-reread window. Opening a store for
  writing takes the lease or refuses with :class:`StoreBusyError` naming the holder; a background timer renews it
  every ``ttl_s / 3`` (a slow append or a long pause between appends keeps it), and it is checked again just before
  an entry is committed — a writer whose lease was taken over (its renewals stopped for ``ttl_s``: a dead or frozen
  process) stops instead of racing. ``close()`` (or the end of the process) releases it.

Credentials for ``s3://`` come from boto3's default chain: ``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY`` (and
``AWS_ENDPOINT_URL`` for an S3-compatible server), ``~/.aws``, or the node's IAM role (``infra/README.md``).
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import threading
import time
import uuid
import weakref
from contextlib import contextmanager

from rtml.datasets.errors import DataError
from rtml.datasets.store.lease_object import lease_object

LEASE_TTL_S = 60.0  # a lease not renewed for this long belongs to a dead writer (the timer renews every ttl/3)
LEASE_FILE = ".rtml_writer.json"


class StoreBusyError(DataError):
    """Another writer holds the store."""


def is_remote(path: str) -> bool:
    return "://" in path and not path.startswith("file://")


class LocalLock:
    """``flock`` on ``STORE/.rtml.lock`` for the duration of ``with lock.held():``."""

    def __init__(self, path: str):
        os.makedirs(path, exist_ok=True)
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
    """The writer lease of an object store; taken at construction, renewed by a timer, released by
    ``close()``/process exit."""

    def __init__(self, path: str, ttl_s: float = LEASE_TTL_S):
        self.path, self.ttl_s = path, ttl_s
        self.obj = lease_object(f"{path.rstrip('/')}/{LEASE_FILE}")
        self.token, self.since = uuid.uuid4().hex, time.time()
        self.version: str | None = None
        self.lost: dict | None = None  # the holder that took the lease from us, once it happened
        self._mutex = threading.Lock()
        self._take()
        self._stop = threading.Event()
        self._timer = threading.Thread(target=_renew_loop, args=(weakref.ref(self), self._stop, ttl_s / 3),
                                       name=f"rtml-lease-{self.token[:6]}", daemon=True)
        self._timer.start()
        self._finalizer = weakref.finalize(self, _release, self.obj, self._stop, self._mutex, self.__dict__)

    def _body(self) -> bytes:
        return json.dumps({"token": self.token, "host": socket.gethostname(), "pid": os.getpid(),
                           "since": self.since, "renewed": time.time()}).encode()

    def _refuse(self, holder: dict | None) -> StoreBusyError:
        holder = holder or {}
        age = time.time() - holder.get("renewed", 0)
        return StoreBusyError(self.path, "writer", "no other writer (one writer at a time on an object store; wait "
                              f"for it, or after {self.ttl_s:.0f} s without a renewal its lease expires)",
                              f"held by {holder.get('host')} pid {holder.get('pid')}, last renewed {age:.0f} s ago"
                              if holder else "the lease changed under this writer")

    def _take(self) -> None:
        holder, version = self.obj.read()
        if holder is None:
            self.version = self.obj.create(self._body())
            if self.version is None:  # another writer created it first
                raise self._refuse(self.obj.read()[0])
            return
        if time.time() - holder.get("renewed", 0) < self.ttl_s:
            raise self._refuse(holder)
        self.version = self.obj.replace(self._body(), version)  # take over a dead writer's lease: one taker wins
        if self.version is None:
            raise self._refuse(self.obj.read()[0])

    def renew(self) -> None:
        """Rewrite the lease if it is still ours (conditional on the version we wrote); marks it lost otherwise."""
        with self._mutex:
            if self.lost is not None or self.version is None:
                return
            new = self.obj.replace(self._body(), self.version)
            if new is None:
                self.lost = self.obj.read()[0] or {}
            else:
                self.version = new

    @contextmanager
    def held(self):
        """Around one append: the lease must still be ours (checked again before the commit by ``check``)."""
        self.renew()
        self.check()
        yield

    def check(self) -> None:
        """Raise :class:`StoreBusyError` unless the stored lease is still the version this writer wrote."""
        if self.lost is None and self.obj.version() != self.version:
            self.lost = self.obj.read()[0] or {}
        if self.lost is not None:
            raise self._refuse(self.lost)

    def close(self) -> None:
        self._finalizer()


def _renew_loop(ref, stop: threading.Event, period: float) -> None:
    """The timer: renew every ``period`` seconds while the lease object lives and is not closed (a weak reference:
    a store dropped without ``close()`` is still collected and released)."""
    while not stop.wait(period):
        lease = ref()
        if lease is None:
            return
        try:
            lease.renew()
        except OSError:  # a network blip: the next tick retries; check() catches a real loss
            pass
        del lease


def _release(obj, stop: threading.Event, mutex: threading.Lock, state: dict) -> None:
    stop.set()
    with mutex:
        if state.get("lost") is None and state.get("version") is not None:
            obj.delete(state["version"])  # only if still ours
        state["version"] = None


def writer_lock(path: str):
    """The lock that protects a store opened for writing."""
    return RemoteLease(path) if is_remote(path) else LocalLock(path)
