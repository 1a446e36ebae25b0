"""Seeding every random number generator a training run draws from, without
destroying the tokenizers already built."""
import random

import numpy as np
from keras.src.backend.common import global_state
from keras.src.random import seed_generator
from keras.src.utils.rng_utils import GLOBAL_RANDOM_SEED
from tensorflow.python.eager import context


def set_global_seed(seed):
    """What keras.utils.set_random_seed(seed) does (Python's, NumPy's, Keras' and
    TensorFlow's global seeds), without clearing TensorFlow's eager kernel cache.

    tf.random.set_seed clears that cache in eager mode, so that stateful random
    ops restart their sequences; with it go the resources tensorflow-text's
    SentencePiece kernels own, and a SentencePiece tokenizer built before fails
    afterwards with "Resource ... SentencepieceOp ... does not exist". kerasllm
    draws its randomness from Keras' seeded stateless generators and seeded
    tf.data ops, which the cache does not affect, so the seed is set here
    without clearing it: tokenizers built before survive, in any order.
    """
    global_state.set_global_attribute(GLOBAL_RANDOM_SEED, seed)
    global_state.set_global_attribute(seed_generator.GLOBAL_SEED_GENERATOR, None)
    random.seed(seed)
    np.random.seed(seed)
    eager = context.context()
    # Context._set_global_seed less its TFE_ContextClearCaches (see above).
    eager._seed = seed
    eager._rng = random.Random(seed)
