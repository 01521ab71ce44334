"""The Ray Train worker runtime shared by training and meta-training (rtml.platform.workers): the driver side
(``launch``: MLflow run, Ray, ``TorchTrainer.fit``, results), the worker side (``runtime``: resume, NaN guard,
metrics, rank-0 export), collectives, the shared config sections."""
