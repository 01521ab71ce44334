"""How a run's status and results reach the driver on any cluster: through MLflow, never a node-local file.

Ray Train workers may run on nodes whose disks the driver cannot see (``infra/rayjob.yaml``: a head without
workers). So rank 0 writes its end-of-run files (``model.pt``, ``summary.json``, ``config.yaml``, plots) into a
node-local scratch directory, logs them as artifacts of the run's MLflow run and deletes the scratch; a non-finite
loss or gradient is recorded as tags on the run (``rtml.status = nan_loss``, the step, the last good checkpoint step), because
Ray Train's ``Result.metrics`` carry only the metrics reported with the last *checkpoint*. The driver reads the
tags after ``fit()`` and downloads the artifacts into its own ``out`` directory. MLflow is the medium every node
already shares (a tracking server on a cluster; the embedded sqlite store on one machine).
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from rtml.platform import tracking

STATUS_TAG = "rtml.status"
NONFINITE = ("nan_loss", "nan_gradient")  # statuses of a run stopped by the NaN guard
RESULT_FILES = {"model.pt": ".", "model_last.pt": ".", "summary.json": ".", "config.yaml": ".", "dipole.png": "plots",
                "spectrum.png": "plots"}  # artifact -> folder under the driver's out


def worker_scratch(name: str) -> Path:
    """A fresh node-local directory for rank 0's end-of-run files (removed by :func:`discard_scratch`)."""
    return Path(tempfile.mkdtemp(prefix=f"rtml-{name}-"))


def discard_scratch(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)


def keep_in_storage(scratch: Path, storage: str, name: str) -> str:
    """Copy rank 0's end-of-run files to ``<storage>/<name>/export-<time>`` (a path or an object-store URL, through
    pyarrow like Ray's own storage); returns where."""
    import time

    import pyarrow.fs

    dest = f"{storage.rstrip('/')}/{name}/export-{time.strftime('%Y%m%d-%H%M%S')}"
    if "://" not in dest:
        shutil.copytree(scratch, dest, dirs_exist_ok=True)
        return dest
    fs, inner = pyarrow.fs.FileSystem.from_uri(dest)
    pyarrow.fs.copy_files(str(scratch), inner, source_filesystem=pyarrow.fs.LocalFileSystem(), destination_filesystem=fs)
    return dest


def mark_running(uri: str, run_id: str) -> None:
    """Driver, before ``fit()``: a resumed run starts clean (an earlier NaN status does not leak into it)."""
    tracking.client(uri).set_tag(run_id, STATUS_TAG, "running")


def mark_nonfinite(uri: str, run_id: str, step: int, last_good_step: int, status: str = "nan_loss") -> None:
    """Rank 0, when the loss (``status='nan_loss'``) or a gradient (``'nan_gradient'``) is non-finite at ``step``
    (before the optimiser step)."""
    c = tracking.client(uri)
    c.set_tag(run_id, "rtml.nan_step", str(step))
    c.set_tag(run_id, "rtml.last_good_step", str(last_good_step))
    c.set_tag(run_id, STATUS_TAG, status)
    tracking.log_metrics(uri, run_id, {f"{status}_at_step": step}, step=step)


def read_status(uri: str, run_id: str) -> dict:
    """``{"status": ...}`` plus ``step`` / ``last_good_step`` for a NaN run, from the run's tags."""
    tags = tracking.client(uri).get_run(run_id).data.tags
    out = {"status": tags.get(STATUS_TAG, "unknown")}
    if out["status"] in NONFINITE:
        out.update(step=int(tags["rtml.nan_step"]), last_good_step=int(tags["rtml.last_good_step"]))
    return out


def fetch_results(uri: str, run_id: str, out: Path, names=RESULT_FILES) -> dict[str, Path]:
    """Download the run's result artifacts that exist into ``out`` (plots into ``out/plots``); returns
    name -> local path."""
    import mlflow.artifacts

    present = {a.path for a in tracking.client(uri).list_artifacts(run_id)}
    got = {}
    for name, folder in names.items():
        if name in present:
            dst = (out / folder).resolve()
            dst.mkdir(parents=True, exist_ok=True)
            got[name] = Path(mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path=name,
                                                                 dst_path=str(dst), tracking_uri=uri))
    return got
