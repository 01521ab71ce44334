"""``debug`` sweep (CI): 2 trials of the debug recipe over the learning rate, ASHA after one report."""

from ray import tune

from rtml.tune_spaces.sweep_space import SweepSpace


def space() -> SweepSpace:
    return SweepSpace(base="debug", params={"optim.lr": tune.grid_search([3e-3, 3e-4])},
                      fixed={"loop.max_steps": 20, "loop.eval_every": 5, "loop.checkpoint_every": 10,
                             "eval.max_trajectories": 1, "eval.max_steps": 20},
                      num_samples=1, max_concurrent_trials=1, grace_period=2, reduction_factor=2)
