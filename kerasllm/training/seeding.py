"""Seeding every random number generator a training run draws from, without
destroying the tokenizers already built."""
import random

import keras
import numpy as np
from keras.src.backend.common import global_state
from keras.src.random import seed_generator
from keras.src.utils.rng_utils import GLOBAL_RANDOM_SEED
from tensorflow.python.eager import context


def set_global_seed(seed):
    """What keras.utils.set_random_seed(seed) does (Python's, NumPy's, Keras' and
    TensorFlow's global seeds), except that TensorFlow's is left alone when it is
    `seed` already.

    Setting TensorFlow's global seed in eager mode clears the eager kernel cache,
    and with it the resources tensorflow-text's SentencePiece kernels own: a
    SentencePiece tokenizer built before fails afterwards with "Resource ...
    SentencepieceOp ... does not exist". So a trainer seeds first, then builds its
    tokenizer, and the training loop's own call keeps it alive.
    """
    if context.global_seed() != seed:
        keras.utils.set_random_seed(seed)
        return
    global_state.set_global_attribute(GLOBAL_RANDOM_SEED, seed)
    global_state.set_global_attribute(seed_generator.GLOBAL_SEED_GENERATOR, None)
    random.seed(seed)
    np.random.seed(seed)
