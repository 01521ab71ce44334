"""A multi-node Ray cluster on one machine, used the way a cluster user uses one (issue 25).

Three Ray nodes started with ``ray start``, each with its own temp root: a head with no CPUs (the job drivers run
there, no rank does) and two worker nodes; an S3 server (moto) is the only storage they share — the training
store, Ray's checkpoints and the MLflow artifacts live there — and MLflow is a tracking *server* (its own
database, artifacts proxied to S3). ``rtml train``, ``rtml meta-train`` and ``rtml tune`` go through
``ray job submit``. The training run meets the failures of a cluster: its driver is stopped and the job submitted
again (resume by name), then a worker node is killed mid-run and a fresh node joins (Ray restarts the worker group
from the last checkpoint); one MLflow run, no more than one checkpoint interval redone each time. A NaN run ends
FAILED, naming its last good checkpoint in S3.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import psutil
import pytest

BIN = Path(sys.executable).parent
pytestmark = [pytest.mark.slow, pytest.mark.timeout(2400)]


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LocalCluster:
    def __init__(self, root: Path, env: dict):
        import tempfile

        # Ray's socket paths live under each node's temp root: keep it short (a Unix socket path has <= 107 bytes)
        self.root, self.env = Path(tempfile.mkdtemp(prefix="rtc", dir="/tmp")), env
        self.gcs, self.dash = _port(), _port()
        self.nodes: dict[str, Path] = {}

    def ray(self, *args, timeout=300, check=True) -> subprocess.CompletedProcess:
        p = subprocess.run([str(BIN / "ray"), *args], env=self.env, capture_output=True, text=True, timeout=timeout,
                           check=False)
        if check:
            assert p.returncode == 0, f"ray {' '.join(args)}: {(p.stdout + p.stderr)[-3000:]}"
        return p

    def start_head(self) -> None:
        tmp = self.root / "h"
        self.ray("start", "--head", "--node-ip-address", "127.0.0.1", "--port", str(self.gcs), "--num-cpus", "0",
                 "--include-dashboard", "true", "--dashboard-host", "127.0.0.1", "--dashboard-port", str(self.dash),
                 "--temp-dir", str(tmp), "--disable-usage-stats")
        self.nodes["head"] = tmp

    def add_node(self, name: str, cpus: int = 2) -> None:
        tmp = self.root / name
        self.ray("start", "--address", f"127.0.0.1:{self.gcs}", "--node-ip-address", "127.0.0.1", "--num-cpus",
                 str(cpus), "--temp-dir", str(tmp), "--disable-usage-stats")
        self.nodes[name] = tmp

    def raylet(self, name: str) -> psutil.Process:
        for p in psutil.process_iter(["cmdline"]):
            cmd = " ".join(p.info["cmdline"] or [])
            if "raylet" in cmd.split(" ")[0] and str(self.nodes[name]) in cmd:
                return p
        raise AssertionError(f"no raylet for node {name}")

    def node_of(self, pid: int) -> str:
        """The node whose raylet is an ancestor of process ``pid``."""
        raylets = {self.raylet(n).pid: n for n in self.nodes}
        for parent in psutil.Process(pid).parents():
            if parent.pid in raylets:
                return raylets[parent.pid]
        raise AssertionError(f"pid {pid} runs under no known raylet")

    def kill_node(self, name: str) -> None:
        """SIGKILL a node's raylet and everything it started (a lost machine)."""
        raylet = self.raylet(name)
        for p in [*raylet.children(recursive=True), raylet]:
            try:
                p.send_signal(signal.SIGKILL)
            except psutil.NoSuchProcess:
                pass

    def submit(self, sid: str, cmd: list[str], wait: bool = True, timeout: int = 900) -> subprocess.CompletedProcess:
        args = ["job", "submit", "--address", f"http://127.0.0.1:{self.dash}", "--submission-id", sid]
        return self.ray(*args, *([] if wait else ["--no-wait"]), "--", *cmd, timeout=timeout, check=False)

    def job_status(self, sid: str) -> str:
        p = self.ray("job", "status", "--address", f"http://127.0.0.1:{self.dash}", sid, check=False)
        text = (p.stdout + p.stderr).lower()  # "Job 'x' succeeded" / "failed" / "was stopped" / "... running"
        for s in ("succeeded", "failed", "stopped", "running", "pending"):
            if s in text:
                return s.upper()
        return "UNKNOWN"

    def wait_job(self, sid: str, timeout: float = 900) -> str:
        deadline = time.time() + timeout
        while time.time() < deadline:
            status = self.job_status(sid)
            if status in ("SUCCEEDED", "FAILED", "STOPPED"):
                return status
            time.sleep(2)
        raise AssertionError(f"job {sid} still running after {timeout} s")

    def logs(self, sid: str) -> str:
        return self.ray("job", "logs", "--address", f"http://127.0.0.1:{self.dash}", sid, check=False).stdout


@pytest.fixture(scope="module")
def cluster(tmp_path_factory, small_store, heldout_store):
    pytest.importorskip("s3fs")
    import boto3
    import s3fs
    from moto.server import ThreadedMotoServer

    root = tmp_path_factory.mktemp("cluster")
    s3 = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    s3.start()
    host, port = s3.get_host_and_port()
    aws = {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test", "AWS_DEFAULT_REGION": "us-east-1",
           "AWS_ENDPOINT_URL": f"http://{host}:{port}"}
    env = {**os.environ, **aws, "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0",
           "PATH": f"{BIN}:{os.environ.get('PATH', '')}"}
    env.pop("RAY_ADDRESS", None)
    env.pop("MLFLOW_TRACKING_URI", None)
    old = {k: os.environ.get(k) for k in aws}
    os.environ.update(aws)  # this process reads S3 and MLflow too
    boto3.client("s3").create_bucket(Bucket="rtml")
    fs = s3fs.S3FileSystem(anon=False)
    fs.put(small_store, "rtml/train.zarr", recursive=True)  # the stores, on S3 only
    fs.put(heldout_store, "rtml/heldout.zarr", recursive=True)
    mport = _port()
    log = open(root / "mlflow.log", "w")  # noqa: SIM115 - the server's log, open while the server runs
    mlflow = subprocess.Popen([str(BIN / "mlflow"), "server", "--backend-store-uri",
                               f"sqlite:///{root / 'mlflow.db'}", "--artifacts-destination", "s3://rtml/mlartifacts",
                               "--host", "127.0.0.1", "--port", str(mport), "--workers", "1"],
                              env=env, stdout=subprocess.DEVNULL, stderr=log)
    uri = f"http://127.0.0.1:{mport}"
    for _ in range(120):
        try:
            urllib.request.urlopen(f"{uri}/health", timeout=2)
            break
        except OSError:
            time.sleep(0.5)
    else:
        raise AssertionError((root / "mlflow.log").read_text()[-3000:])
    c = LocalCluster(root, env)
    c.uri, c.store, c.heldout = uri, "s3://rtml/train.zarr", "s3://rtml/heldout.zarr"
    try:
        c.start_head()
        c.add_node("a")
        c.add_node("b")
        yield c
    finally:
        c.ray("stop", "--force", check=False, timeout=120)
        import shutil

        shutil.rmtree(c.root, ignore_errors=True)
        mlflow.terminate()
        mlflow.wait(timeout=30)
        log.close()
        s3.stop()
        for k, v in old.items():
            os.environ.pop(k, None) if v is None else os.environ.__setitem__(k, v)


def _train_cmd(c: LocalCluster, name: str, out: Path, *extra: str) -> list[str]:
    return [str(BIN / "rtml"), "train", "debug", "--data.store", str(c.store), "--data.val-store", str(c.heldout),
            "--data.horizons", "16", "--data.batch-size", "4", "--data.val-windows", "2",
            "--eval.max-trajectories", "1", "--eval.max-steps", "8", "--select.max-trajectories", "1",
            "--select.max-steps", "8", "--name", name, "--out", str(out), "--storage", "s3://rtml/ray",
            "--tracking.uri", c.uri, "--scaling.placement", "SPREAD", "--scaling.max-failures", "3", *extra]


def _progress(out: Path) -> dict[int, dict]:
    got = {}
    for r in (0, 1):
        try:
            got[r] = json.loads((out / "progress" / f"rank{r}.json").read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            pass
    return got


def _wait_past_checkpoint(out: Path, boundary_step: int, timeout: float = 600) -> dict:
    """Rank 0's progress once its checkpoint of step ``boundary_step`` has been in storage for 2.5 s (Ray Train V2's
    controller registers a reported checkpoint when it polls the workers, every 2 s). Counting from the step
    itself was a race: the held-out evaluation before the checkpoint can take longer than the margin."""
    deadline, t_cross = time.time() + timeout, None
    while time.time() < deadline:
        p = _progress(out).get(0)
        if p and (p.get("checkpointed") or 0) >= boundary_step:
            t_cross = t_cross or time.time()
            if time.time() - t_cross > 2.5:
                return p
        time.sleep(0.05)
    raise AssertionError(f"rank 0 did not pass step {boundary_step}: {_progress(out)}")


def test_train_survives_a_driver_restart_and_a_lost_node(cluster, tmp_path):
    from mlflow.tracking import MlflowClient

    every = 40
    out = tmp_path / "ft"
    cmd = _train_cmd(cluster, "ft", out, "--loop.max-steps", f"{3 * every}", "--loop.checkpoint-every", f"{every}",
                     "--loop.eval-every", f"{every}")
    assert cluster.submit("ft-1", cmd, wait=False).returncode == 0
    stopped_at = _wait_past_checkpoint(out, every)["step"]
    cluster.ray("job", "stop", "--address", f"http://127.0.0.1:{cluster.dash}", "ft-1", timeout=120, check=False)
    assert cluster.wait_job("ft-1", 120) in ("STOPPED", "FAILED")
    for f in (out / "progress").glob("*.json"):
        f.unlink()
    assert cluster.submit("ft-2", cmd, wait=False).returncode == 0  # the same command: resume by name
    rank0 = _wait_past_checkpoint(out, 2 * every)
    lost = cluster.node_of(rank0["pid"])  # the node of rank 0 (its raylet's process tree)
    killed_at = rank0["step"]
    cluster.kill_node(lost)
    cluster.add_node("c")  # a replacement, as an autoscaler would bring
    status = cluster.wait_job("ft-2", 900)
    logs = cluster.logs("ft-2")
    assert status == "SUCCEEDED", logs[-4000:]
    c = MlflowClient(cluster.uri)
    exp = c.get_experiment_by_name("rtml")
    (r,) = c.search_runs([exp.experiment_id], filter_string="tags.`rtml.run_name` = 'ft'")  # one run
    assert r.info.status == "FINISHED"
    resumed = [m.value for m in sorted(c.get_metric_history(r.info.run_id, "resumed_from_step"),
                                       key=lambda m: m.timestamp)]
    print(f"driver stopped at step {stopped_at}, killed node '{lost}' at step {killed_at}; resumed from {resumed}")
    assert len(resumed) >= 2, resumed  # the driver restart, then the lost node
    assert 0 <= stopped_at - resumed[0] <= every and resumed[0] >= every, (stopped_at, resumed)
    assert 0 <= killed_at - resumed[-1] <= every and resumed[-1] >= 2 * every, (killed_at, resumed)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["final"]["step"] == 3 * every and os.path.isfile(summary["model"])
    assert {"model.pt", "summary.json"} <= {a.path for a in c.list_artifacts(r.info.run_id)}
    import boto3

    keys = [o["Key"] for o in boto3.client("s3").list_objects_v2(Bucket="rtml", Prefix="mlartifacts/")["Contents"]]
    assert any(k.endswith("/model.pt") for k in keys)  # through the tracking server into S3, not a shared disk
    ckpts = boto3.client("s3").list_objects_v2(Bucket="rtml", Prefix="ray/ft/")
    assert any("checkpoint_" in o["Key"] for o in ckpts["Contents"])


def test_nan_run_fails_naming_its_last_good_checkpoint(cluster, tmp_path):
    cmd = _train_cmd(cluster, "nan", tmp_path / "nan", "--loop.max-steps", "30", "--loop.checkpoint-every", "5",
                     "--loop.eval-every", "5", "--loop.nan-at-step", "12", "--select.no-enabled")
    done = cluster.submit("nan-1", cmd)
    text = done.stdout + done.stderr
    assert done.returncode != 0 and cluster.job_status("nan-1") == "FAILED", text[-3000:]
    assert "the loss became NaN/inf at step 12" in text and "Last good checkpoint (step 10): s3://rtml/ray/nan/" \
        in text, text[-3000:]


def test_meta_train_and_tune_through_job_submit(cluster, tmp_path):
    from mlflow.tracking import MlflowClient

    meta = [str(BIN / "rtml"), "meta-train", "debug", "--tasks.store", str(cluster.store), "--tasks.exclude", "lih",
            "--tasks.horizon", "4", "--learner.inner-steps", "1", "--loop.max-steps", "4",
            "--loop.checkpoint-every", "2", "--name", "meta-c", "--out", str(tmp_path / "meta"),
            "--storage", "s3://rtml/ray", "--tracking.uri", cluster.uri]
    done = cluster.submit("meta-1", meta)
    assert done.returncode == 0 and cluster.job_status("meta-1") == "SUCCEEDED", (done.stdout + done.stderr)[-3000:]
    c = MlflowClient(cluster.uri)
    exp = c.get_experiment_by_name("rtml-meta") or c.get_experiment_by_name("rtml")
    runs = c.search_runs([exp.experiment_id], filter_string="tags.`rtml.run_name` = 'meta-c'")
    assert len(runs) == 1 and runs[0].info.status == "FINISHED"
    tune = [str(BIN / "rtml"), "tune", "debug", "--train.data.store", str(cluster.store),
            "--train.data.val-store", str(cluster.heldout), "--train.data.horizons", "4", "8",
            "--train.data.batch-size", "2", "--name", "sw", "--storage", "s3://rtml/tune", "--out",
            str(tmp_path / "tune"), "--tracking-uri", cluster.uri]
    done = cluster.submit("tune-1", tune, timeout=1200)
    assert done.returncode == 0 and cluster.job_status("tune-1") == "SUCCEEDED", (done.stdout + done.stderr)[-3000:]
    import boto3

    summary = json.loads(boto3.client("s3").get_object(Bucket="rtml", Key="tune/sw/rtml_summary.json")["Body"].read())
    assert summary["trials"] == 2 and summary["errors"] == 0
    parents = c.search_runs([c.get_experiment_by_name("rtml-sweeps").experiment_id],
                            filter_string="tags.`rtml.sweep` = 'sw'")
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
