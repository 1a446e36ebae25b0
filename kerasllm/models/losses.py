"""Loss and metric reductions every task model uses."""
from keras import ops


def masked_mean(values, weights):
    """Weighted mean of `values`; 0 (not NaN) when every weight is 0."""
    weights = ops.cast(weights, "float32")
    return ops.sum(ops.cast(values, "float32") * weights) / ops.maximum(ops.sum(weights), 1.0)
