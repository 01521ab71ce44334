"""Progress of a run on the driver's console: one line per ``ray.train.report`` (validation/checkpoint interval).

A Ray Train ``UserCallback``: it runs in the Train controller, whose output Ray forwards to the driver, and sees
what rank 0 reported (step, validation loss, the latest training loss and windows or tasks per second), so it
works wherever the workers run. ETA is extrapolated from the steps done since the callback first saw the run
(a resumed run starts counting at its first report).
"""

from __future__ import annotations

import time

from ray.train import UserCallback


class ProgressCallback(UserCallback):
    def __init__(self, name: str, max_steps: int):
        self.name, self.max_steps = name, max_steps
        self._t0 = self._s0 = None

    def after_report(self, run_context, metrics, checkpoint):
        m = metrics[0] if metrics else {}
        step = m.get("step")
        if step is None:
            return
        now = time.time()
        if self._t0 is None:
            self._t0, self._s0 = now, step
            eta = "?"
        else:
            rate = (step - self._s0) / max(now - self._t0, 1e-9)
            eta = f"{(self.max_steps - step) / rate / 60:.1f} min" if rate > 0 else "?"
        parts = [f"[{self.name}] step {step}/{self.max_steps}"]
        for key, label in (("train_loss", "loss"), ("val_loss", "val"), ("meta_loss", "meta loss"),
                           ("windows_per_s", "windows/s"), ("tasks_per_s", "tasks/s")):
            if isinstance(m.get(key), (int, float)):
                parts.append(f"{label} {m[key]:.4g}")
        parts.append(f"ETA {eta}" + (" (checkpoint)" if checkpoint is not None else ""))
        print("  ".join(parts), flush=True)
