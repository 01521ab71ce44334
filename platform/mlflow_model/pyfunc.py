"""Models-from-code source of the rtml MLflow model (run by MLflow at log and load time, never pickled).

``mlflow.pyfunc.load_model(uri).unwrap_python_model().model`` is the :class:`rtml.models.surrogate.Surrogate`;
``predict({"store": PATH, "ids": [...], "max_steps": N})`` rolls it out on trajectories of a Zarr store and returns
the per-trajectory rollout metrics of :func:`rtml.platform.evaluate.evaluate_store` (model and physics baselines).
"""

import mlflow.models
import mlflow.pyfunc

from rtml.platform.evaluate import RolloutEvalConfig, evaluate_store
from rtml.platform.modelio import load_model


class RtmlSurrogate(mlflow.pyfunc.PythonModel):
    def load_context(self, context):
        self.model = load_model(context.artifacts["model.pt"])

    def predict(self, context, model_input, params=None):
        spec = dict(model_input)
        cfg = RolloutEvalConfig(max_trajectories=int(spec.get("max_trajectories", 4)),
                                max_steps=spec.get("max_steps"))
        res = evaluate_store(self.model, spec["store"], spec.get("ids"), cfg, progress=False)
        return [{"id": r["id"], **{w: r[w] for w in ("model", "frozen_xc", "linear_xc", "trivial") if w in r}}
                for r in res]


mlflow.models.set_model(RtmlSurrogate())
