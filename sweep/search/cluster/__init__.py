"""Joining, starting and cleaning up Ray clusters, and the workers that run trials on them."""

from sweep.search.cluster.leftovers import SESSION_KEY, dead_drivers_sessions, end_leftover_ray, processes_of
from sweep.search.cluster.start import reason

__all__ = [
    "SESSION_KEY",
    "dead_drivers_sessions",
    "end_leftover_ray",
    "processes_of",
    "reason",
]
