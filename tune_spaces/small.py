"""``small`` sweep (laptop / one GPU node): learning rate, horizon curriculum and xc anchor."""

from ray import tune

from rtml.tune_spaces.sweep_space import SweepSpace


def space() -> SweepSpace:
    return SweepSpace(base="small",
                      params={"optim.lr": tune.loguniform(3e-4, 1e-2),
                              "data.steps_per_stage": tune.choice([100, 300]),
                              "model.xc_anchor": tune.choice(["frozen", "linear"]),
                              "loss.derivative": tune.choice([1.0, 10.0])},
                      num_samples=16, max_concurrent_trials=2, grace_period=2, reduction_factor=3,
                      searcher="random")
