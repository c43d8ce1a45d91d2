"""The weight cache lives in `opengenie.features.weights`; this name keeps `opengenie.evaluation.weights` imports working."""

from opengenie.features.weights import FETCH_COMMAND, FetchError, cache_dir, describe, fetch, load_arrays, weights_path

__all__ = ["FETCH_COMMAND", "FetchError", "cache_dir", "describe", "fetch", "load_arrays", "weights_path"]
