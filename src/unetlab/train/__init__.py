"""Training on HF Accelerate: one loop (`train`), pluggable tasks (DDPM, text-to-image, ...), EMA, checkpoints."""

from .ema import EMA
from .loop import Task, TrainConfig, batch_indices, learning_rate, train

__all__ = ["EMA", "Task", "TrainConfig", "batch_indices", "learning_rate", "train"]
