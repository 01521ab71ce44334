"""Steps of k·dt (issue 26): the reference seen at stride k, strided training windows with the field averaged over
each step, and rollouts/evaluation at stride k on the reference's own time grid."""

import numpy as np
import pytest
import torch

from rtml.datasets.store.zarr_store import TrajectoryStore
from rtml.datasets.windows import WindowReader, collate_windows, first_start
from rtml.platform.evaluate import RolloutEvalConfig, evaluate_trajectories


def test_strided_trajectory_is_the_reference_on_its_own_grid(h2_traj):
    s = h2_traj.strided(4)
    n = (h2_traj.n_steps - 1) // 4
    assert s.n_steps == n + 1 and s.dt == pytest.approx(4 * h2_traj.dt) and s.meta["stride"] == 4
    np.testing.assert_array_equal(s.density, h2_traj.density[:4 * n + 1:4])
    np.testing.assert_array_equal(s.time, h2_traj.time[:4 * n + 1:4])
    # the field over each coarse step is its mean over the fine steps (trapezoid on the fine grid)
    fine = 0.5 * (h2_traj.field[1:] + h2_traj.field[:-1])
    np.testing.assert_allclose(s.step_field()[1], fine[4:8].mean(0))
    assert h2_traj.strided(1) is h2_traj and s.validate() is s
    np.testing.assert_allclose(s.strided(2).time, h2_traj.time[:8 * (n // 2) + 1:8])  # strides compose
    with pytest.raises(ValueError, match="stride"):
        h2_traj.strided(0)


def test_strided_windows_read_every_kth_frame_with_the_mean_field(tmp_path, h2_traj):
    path = tmp_path / "s.zarr"
    with TrajectoryStore(path, mode="w", precision="float64") as st:
        st.append(h2_traj, "h2")
    r = WindowReader(str(path), 4, stride=3)
    start = first_start(3)
    assert start == 4 and r.n_starts(40, 4, 3) == 40 - 12 - 4
    w = r.sample("h2", start)
    np.testing.assert_array_equal(w["rho"], h2_traj.density[start - 3:start + 13:3])
    np.testing.assert_allclose(w["field_mid"][1], 0.5 * (h2_traj.field[start + 1:start + 4] +
                                                       h2_traj.field[start:start + 3]).mean(0))
    b = collate_windows([w])
    assert b.horizon == 4 and b.dt == pytest.approx(3 * h2_traj.dt) and b.window_field_mid.shape == (1, 4, 3)


def test_evaluation_at_a_stride_reports_cost_per_simulated_au(h2o_traj):
    one = evaluate_trajectories(None, [(h2o_traj, "h2o")], RolloutEvalConfig(max_steps=8))[0]
    two = evaluate_trajectories(None, [(h2o_traj, "h2o")], RolloutEvalConfig(max_steps=4, stride=2))[0]
    assert one["frames"] == 8 and two["frames"] == 4  # the same simulated time: 8 × dt = 4 × 2dt
    for r, dt in ((one, h2o_traj.dt), (two, 2 * h2o_traj.dt)):
        assert r["linear_xc"]["ms_per_au"] == pytest.approx(r["linear_xc"]["ms_per_step"] / dt)
    np.testing.assert_allclose(two["time"], h2o_traj.time[:2 * (2 + 4) + 1:2])  # on the reference's own frames
    # a larger step is a worse integrator for the same physics, not a different reference
    assert two["linear_xc"]["dipole_nrmse"] > 0 and np.isfinite(two["frozen_xc"]["dipole_nrmse"])


def test_field_mid_equal_to_the_midpoints_changes_nothing(small_store):
    from rtml.models.surrogate import Surrogate
    from rtml.platform.train.config import DataConfig, TrainConfig
    from rtml.platform.train.data import WindowStream

    cfg = TrainConfig(data=DataConfig(store=small_store))
    stream = WindowStream(small_store, "all", (4,), 10, 2, split_fractions=(1.0, 0.0), seed=1)
    b = stream.batch(0)
    from rtml.models.inputs import MoleculeBatch

    torch.manual_seed(0)
    model = Surrogate(cfg.model)
    mol = MoleculeBatch.from_window(b)
    mid = 0.5 * (b.window_field[:, 1:] + b.window_field[:, :-1]).double()
    a = model(mol, b.window_rho, b.window_field, b.dt, rho_prev=b.prev)
    c = model(mol, b.window_rho, b.window_field, b.dt, rho_prev=b.prev, field_mid=mid)
    torch.testing.assert_close(a, c)


def test_strided_models_are_refused_where_steps_are_the_engines(tmp_path):
    """rtml propagate hands frames to the engine at its dt: a stride-8 model there would be silently wrong."""
    from rtml.datasets.engine.run import EngineConfig
    from rtml.models.surrogate import Surrogate, preset
    from rtml.platform.hybrid.propagator import check_models

    model = Surrogate(preset("debug", stride=8))
    with pytest.raises(ValueError, match="model.stride.*got 8"):
        check_models([model], EngineConfig())


def test_step_costs_time_each_predictor_at_its_own_step(h2o_traj):
    from rtml.models.baselines import LinearXC
    from rtml.models.surrogate import Surrogate, preset
    from rtml.platform.regimes import step_costs

    model = Surrogate(preset("debug", stride=2))
    got = step_costs({"model": model, "linear_xc": LinearXC()}, h2o_traj, steps=4, batch=2, repeats=1)
    assert got["model@1/ms_per_au"] == pytest.approx(got["model@1"] / (2 * h2o_traj.dt))
    assert got["linear_xc@2/ms_per_au"] == pytest.approx(got["linear_xc@2"] / h2o_traj.dt)
