"""The README's main job, end to end with reduced sizes (slow: data generation + Ray Train + evaluation)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

BIN = Path(sys.executable).parent


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_quickstart_small(tmp_path):
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0"}
    r = subprocess.run([str(BIN / "rtml"), "quickstart", "--out", str(tmp_path / "qs"), "--steps", "80",
                        "--n-geometries", "1", "--train-steps", "60", "--heldout-kick-steps", "200",
                        "--heldout-pulse-steps", "100", "--meta-steps", "4", "--shots", "2",
                        "--tracking-uri", f"sqlite:///{tmp_path / 'mlflow.db'}", "--horizons", "8", "16"],
                       check=False, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=850)
    assert r.returncode == 0, (r.stdout + r.stderr)[-4000:]
    assert "one-step MSE / trivial" in r.stdout and "dipole_nrmse" in r.stdout
    assert "frozen xc" in r.stdout and "linear xc" in r.stdout  # the physics baselines side by side
    assert "| all | weak |" in r.stdout and "| all | strong |" in r.stdout  # the regime table (kicks, resonant)
    s = json.loads((tmp_path / "qs" / "summary.json").read_text())
    assert s["final"]["step"] == 60 and s["final"]["val_mse_ratio"] < 1.0  # better than ρ(t+Δt) = ρ(t)
    assert all(Path(p).exists() for p in s["plots"])
    big = s["large_steps"]  # the physics at steps of 8·dt, cost per simulated a.u. beside accuracy
    assert big["linear_xc_lr"]["dipole_nrmse"] < big["linear_xc"]["dipole_nrmse"] and big["linear_xc_lr"]["ms_per_au"] > 0
    # few-shot stage: meta-trained on the training molecules, adapted to NH3 (never trained on)
    a = s["adapt"]
    assert a["molecule"] == "nh3" and len(a["support"]) == 2 and "adapted/dipole_nrmse" in a["metrics"]
    assert "zero-shot" in r.stdout and "fine-tune" in r.stdout and Path(a["adapted_model"]).exists()
