"""Search spaces: the YAML files (shipped ones are package data), their parsing and checks."""

from sweep.space.checks import check_on_data, check_sizes, named_layers, sizes
from sweep.space.default import SHOWN, announce
from sweep.space.load import MAX_NODES, RANGES, SEARCH_KEYS, load_space, space_path, unit_layers
from sweep.space.types import Budget, Distribution, SearchSpace, fingerprint_differences, fingerprint_digest

__all__ = [
    "MAX_NODES",
    "RANGES",
    "SEARCH_KEYS",
    "SHOWN",
    "Budget",
    "Distribution",
    "SearchSpace",
    "announce",
    "check_on_data",
    "check_sizes",
    "fingerprint_differences",
    "fingerprint_digest",
    "load_space",
    "named_layers",
    "sizes",
    "space_path",
    "unit_layers",
]
