"""Per-worker window streams from a Zarr store: a deterministic, resumable, sharded sampler with prefetch.

The batch of global step ``s`` on rank ``r`` is drawn from ``rng(seed, s, r)``: a run resumed at step ``s`` sees
exactly the windows an uninterrupted run would have seen, whatever happened before. Ranks read disjoint shards:
rank ``r`` only takes window starts ``≡ r (mod world_size)``. The window length follows the horizon curriculum
(:class:`rtml.models.schedules.HorizonCurriculum`). A background thread reads ahead ``prefetch`` batches and the
time the training loop waits for data is measured (``data_wait_s``).
"""

from __future__ import annotations

import queue
import threading
import time

import numpy as np

from rtml.datasets.errors import DataError
from rtml.datasets.windows import WindowReader, collate_windows, first_start
from rtml.models.schedules import HorizonCurriculum


class WindowStream:
    """Batches of ``batch_size`` windows per step for one rank; ``split`` of ``store`` ('train'/'val'/'all')."""

    def __init__(self, store: str, split: str, horizons: tuple[int, ...], steps_per_stage: int, batch_size: int,
                 rank: int = 0, world_size: int = 1, seed: int = 0, split_seed: int = 0,
                 split_fractions=(0.8, 0.1, 0.1), xc_potential: bool = False, max_geometries: int | None = None,
                 stride: int = 1):
        self.curriculum = HorizonCurriculum(stages=tuple(horizons), steps_per_stage=steps_per_stage)
        # Kohn–Sham terms always (the head's exact terms and the unrolled dipole); V_xc(t) for Fock supervision.
        self.reader = WindowReader(store, max(horizons), split, split_seed=split_seed,
                                   split_fractions=split_fractions, kohn_sham=True, xc_potential=xc_potential,
                                   max_geometries=max_geometries, stride=stride)
        self.stride = stride
        self.batch_size, self.rank, self.world_size, self.seed = batch_size, rank, world_size, seed
        self.n_steps = self.reader.n_steps
        if min(WindowReader.n_starts(n, max(horizons), stride) for n in self.n_steps.values()) < world_size:
            raise DataError(store, "n_steps", f"trajectories longer than the horizon {max(horizons)}·{stride} + "
                                              f"{first_start(stride) + world_size - 1} (one window start per rank)",
                            str(min(self.n_steps.values())))

    def horizon(self, step: int) -> int:
        return self.curriculum.horizon(step)

    def plan(self, step: int) -> list[tuple[str, int, int]]:
        """(trajectory id, start frame, horizon) of the windows of ``step`` on this rank (the start is the frame of
        the window's initial state, :mod:`rtml.datasets.windows`)."""
        h = self.horizon(step)
        rng = np.random.default_rng([self.seed, step, self.rank])
        ids = list(self.n_steps)
        n_starts = {i: WindowReader.n_starts(self.n_steps[i], h, self.stride) for i in ids}
        w = np.array([n_starts[i] for i in ids], float)
        out = []
        for _ in range(self.batch_size):
            tid = ids[rng.choice(len(ids), p=w / w.sum())]
            mine = (n_starts[tid] - self.rank + self.world_size - 1) // self.world_size  # k ≡ rank (mod world)
            out.append((tid, first_start(self.stride) + self.rank + self.world_size * int(rng.integers(0, mine)), h))
        return out

    def batch(self, step: int):
        return collate_windows(self.reader.sample_many(self.plan(step)))

    def iterate(self, start_step: int, stop_step: int, prefetch: int = 2):
        """Yield (step, WindowBatch, wait_seconds) for steps in [start_step, stop_step), read ahead in a thread."""
        q: queue.Queue = queue.Queue(maxsize=max(1, prefetch))
        stop = threading.Event()

        def reader():
            try:
                for s in range(start_step, stop_step):
                    if stop.is_set():
                        return
                    q.put((s, self.batch(s)))
            except Exception as exc:  # noqa: BLE001 - re-raised in the consumer with its traceback
                q.put(exc)
            q.put(None)

        th = threading.Thread(target=reader, daemon=True, name="rtml-window-reader")
        th.start()
        try:
            while True:
                t0 = time.perf_counter()
                item = q.get()
                if item is None:
                    return
                if isinstance(item, Exception):
                    raise item
                yield item[0], item[1], time.perf_counter() - t0
        finally:
            stop.set()
            while th.is_alive():
                try:
                    q.get_nowait()
                except queue.Empty:
                    th.join(timeout=0.1)
