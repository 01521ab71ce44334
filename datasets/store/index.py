"""The trajectory index of a store: one JSON entry per committed trajectory, in an append-only Zarr string array.

``STORE/index/entries`` is a 1-D variable-length UTF-8 array (chunks of ``CHUNK`` entries). Appending an entry
grows the array by one (a metadata write) and writes the one chunk that holds the new slot, so an append costs the
same with 10 or 100,000 trajectories; opening a store reads nothing of the index, the first lookup reads it once
(then ``dict`` lookups), later lookups only read the slots appended since (``refresh``). An empty slot is a commit
in flight (the array grown, the entry not yet written) or one that never finished (its writer died in between):
readers skip it for now and read it again at every refresh, so an entry committed after a reader saw its slot
empty is not missed.

Stores of schema 1–2 kept the index as a JSON list in the root attributes; they are read as they are and moved to
the array on their first append (:meth:`StoreIndex.migrate`).
"""

from __future__ import annotations

import json

import numpy as np
import zarr

CHUNK = 64  # entries per index chunk: an append rewrites at most this many entries


class StoreIndex:
    """Read/append access to one store's index (``legacy``: the schema 1–2 list from the root attributes)."""

    def __init__(self, path: str, root: zarr.Group, legacy: list[dict] | None = None):
        self.path, self.root = path, root
        self._legacy = legacy
        self._entries: dict[str, dict] = {}  # id -> entry, in commit order (dicts keep insertion order)
        self._seen = 0  # slots of the array read so far
        self._pending: set[int] = set()  # empty slots seen: re-read at every refresh (a reader must not miss them)

    # -- reading ---------------------------------------------------------------------------------------------------
    def _array(self, mode: str = "r"):
        return zarr.open_array(self.path, path="index/entries", mode=mode)

    def refresh(self) -> None:
        """Read the slots appended since the last read (by this or any other writer)."""
        if self._legacy is not None:
            self._entries = {e["id"]: e for e in self._legacy}
            return
        try:
            arr = self._array()
        except (FileNotFoundError, zarr.errors.ArrayNotFoundError, KeyError):
            return  # a store without entries yet
        n = arr.shape[0]
        for i in list(self._pending):  # slots that were empty: a commit in flight then, maybe written since
            text = str(np.asarray(arr[i]))
            if text:
                self._add(text)
                self._pending.discard(i)
        if n > self._seen:
            for i, text in enumerate(np.asarray(arr[self._seen:n]).tolist(), start=self._seen):
                if text:
                    self._add(text)
                else:  # '' = a commit in flight (grown, not yet written) or one whose writer died: look again
                    self._pending.add(i)
            self._seen = n

    def _add(self, text: str) -> None:
        e = json.loads(text)
        self._entries[e["id"]] = e

    def entries(self) -> dict[str, dict]:
        """All committed entries (fresh: includes other writers' appends)."""
        self.refresh()
        return self._entries

    def get(self, traj_id: str) -> dict | None:
        """The entry of ``traj_id`` or None; O(1) once the index has been read."""
        if traj_id not in self._entries:
            self.refresh()
        return self._entries.get(traj_id)

    # -- writing (the caller holds the store's writer lock) ---------------------------------------------------------
    def append(self, entry: dict) -> None:
        """Commit one entry: grow the array by one slot, then write the slot (the commit point)."""
        if self._legacy is not None:
            self.migrate()
        try:
            arr = self._array("r+")
        except (FileNotFoundError, zarr.errors.ArrayNotFoundError, KeyError):
            arr = self.root.create_array("index/entries", shape=(0,), dtype=str, chunks=(CHUNK,))
        n = arr.shape[0]
        arr.resize((n + 1,))
        arr[n] = json.dumps(entry)
        self._entries[entry["id"]] = entry
        self._seen = max(self._seen, n + 1)

    def migrate(self) -> None:
        """Move a schema 1–2 index (root attribute list) into the entries array, then drop the list."""
        legacy, self._legacy = self._legacy or [], None
        arr = self.root.create_array("index/entries", shape=(len(legacy),), dtype=str, chunks=(CHUNK,),
                                     overwrite=True)
        if legacy:
            arr[:] = np.array([json.dumps(e) for e in legacy], dtype=object)
        self._entries, self._seen = {e["id"]: e for e in legacy}, len(legacy)
        info = dict(self.root.attrs["rtml_store"])
        info.pop("index", None)
        info["schema_version"] = max(3, info["schema_version"])
        self.root.attrs["rtml_store"] = info
