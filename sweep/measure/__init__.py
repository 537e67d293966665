"""What a network costs and how well it does: params, FLOPs, memory, latency, top-1 error."""

from sweep.measure.metrics import cpu_max_pool_channels_last, size_at, sparsity_metrics, top1_error

__all__ = [
    "cpu_max_pool_channels_last",
    "size_at",
    "sparsity_metrics",
    "top1_error",
]
