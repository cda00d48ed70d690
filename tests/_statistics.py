"""What the statistics tests compare: a feature's quantile boundaries, and how far a boundary is from a quantile."""
import numpy as np
from tensorflow_metadata.proto.v0 import statistics_pb2


def quantiles(feature) -> list[float]:
    (h,) = [h for h in feature.num_stats.histograms if h.type == statistics_pb2.Histogram.QUANTILES]
    return [h.buckets[0].low_value, *(b.high_value for b in h.buckets)]


def rank_error(values: np.ndarray, boundary: float, q: float) -> float:
    "How far, as a share of values, `boundary` is from the `q` quantile of `values`."
    return max(0.0, np.mean(values < boundary) - q, q - np.mean(values <= boundary))
