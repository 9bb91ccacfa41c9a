"""The train-gpu component."""

from components.train_gpu.component import train_gpu, with_gpu

__all__ = ["train_gpu", "with_gpu"]
