"""Distributed training: Ray Train ``TorchTrainer`` workers, each running a DeepSpeed engine (rtml.platform.train)."""
