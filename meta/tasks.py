"""Few-shot tasks over a trajectory store: one task = one molecule; support = k trajectories, query = others.

Everything is reproducible from a seed: :meth:`TaskSampler.sample` with ``rng(seed, step, rank, i)`` picks the
molecule and splits its trajectories; :func:`window_batches` draws the windows of a support or query set.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from rtml.datasets.errors import DataError
from rtml.datasets.store.zarr_store import TrajectoryStore
from rtml.datasets.windows import FIRST_START, WindowBatch, WindowReader, collate_windows


@dataclass(kw_only=True)
class Task:
    molecule: str
    support: list[str]  # trajectory ids
    query: list[str]


def by_molecule(store: TrajectoryStore) -> dict[str, list[str]]:
    """Molecule name -> its trajectory ids (sorted), from the store index."""
    out: dict[str, list[str]] = {}
    for e in store.index:
        out.setdefault(e["molecule"], []).append(e["id"])
    return {m: sorted(ids) for m, ids in sorted(out.items())}


def split_task(molecule: str, ids: list[str], shots: int, query: int | None, rng: np.random.Generator,
               source: str = "<store>", fixed_query: bool = False) -> Task:
    """Random support (``shots`` ids) / query (``query`` others; None = all the rest) split of one molecule: the
    first ``shots`` ids of a permutation, then the next ``query``. ``fixed_query`` (adaptation benchmarks): the
    query set is the *last* ``query`` ids instead, so it does not depend on ``shots`` — a curve over k (same rng
    seed) is measured on the same queries, with nested supports."""
    need = shots + (query or 1)
    if len(ids) < need:
        raise DataError(source, f"trajectories of '{molecule}'",
                        f"at least {need} (k={shots} support + {query or 1} query)", str(len(ids)))
    perm = [ids[i] for i in rng.permutation(len(ids))]
    return Task(molecule=molecule, support=sorted(perm[:shots]),
                query=sorted(perm[shots:] if query is None else perm[len(perm) - query:] if fixed_query else
                             perm[shots:shots + query]))


class TaskSampler:
    """Tasks drawn from ``store``; ``molecules`` (empty: all) minus ``exclude``, each with at least
    ``shots + query`` trajectories long enough for a window of ``horizon`` transitions."""

    def __init__(self, store: str, shots: int, query: int, horizon: int, molecules=(), exclude=(), seed: int = 0):
        self.store_path, self.shots, self.query, self.seed = str(store), shots, query, seed
        st = TrajectoryStore(self.store_path)
        groups = by_molecule(st)
        unknown = [m for m in list(molecules) + list(exclude) if m not in groups]
        if unknown:
            raise DataError(self.store_path, "tasks.molecules/exclude", f"molecules of the store {sorted(groups)}",
                            str(unknown))
        n_steps = {e["id"]: e["n_steps"] for e in st.index}
        names = [m for m in (molecules or groups) if m not in set(exclude)]
        self.groups = {m: [i for i in groups[m] if WindowReader.n_starts(n_steps[i], horizon) > 0] for m in names}
        if not self.groups:
            raise DataError(self.store_path, "tasks.molecules", "at least one molecule left after tasks.exclude",
                            f"molecules {sorted(groups)}, exclude {list(exclude)}")
        for m, ids in self.groups.items():
            if len(ids) < shots + query:
                raise DataError(self.store_path, f"trajectories of '{m}'",
                                f"at least tasks.shots + tasks.query = {shots + query} with more than "
                                f"{FIRST_START} + horizon = {FIRST_START + horizon} frames", str(len(ids)))
        self.molecules = sorted(self.groups)

    def sample(self, step: int, rank: int = 0, i: int = 0) -> Task:
        rng = np.random.default_rng([self.seed, step, rank, i])
        m = self.molecules[int(rng.integers(len(self.molecules)))]
        return split_task(m, self.groups[m], self.shots, self.query, rng, self.store_path)


class WindowSource:
    """Random windows of ``horizon`` transitions of chosen trajectories of a store (the reader opens the store
    lazily: picklable). Window convention as in training (:mod:`rtml.datasets.windows`): a previous frame, then the
    initial state at frame ≥ FIRST_START."""

    def __init__(self, store: str, horizon: int):
        self.horizon = horizon
        self.reader = WindowReader(store, horizon, "all", kohn_sham=True)
        self.n_steps = self.reader.n_steps

    def batch(self, ids: list[str], n_windows: int, rng: np.random.Generator) -> WindowBatch:
        """``n_windows`` windows spread over ``ids`` (round robin in a random order, random starts)."""
        order = rng.permutation(len(ids))
        plan = []
        for j in range(n_windows):
            tid = ids[order[j % len(ids)]]
            start = FIRST_START + int(rng.integers(0, WindowReader.n_starts(self.n_steps[tid], self.horizon)))
            plan.append((tid, start, self.horizon))
        return collate_windows(self.reader.sample_many(plan))

    def batches(self, ids: list[str], n_windows: int, n_batches: int, seed) -> list[WindowBatch]:
        """``n_batches`` batches (one per inner step), reproducible from ``seed`` (an int or a list of ints)."""
        rng = np.random.default_rng(seed)
        return [self.batch(ids, n_windows, rng) for _ in range(n_batches)]
