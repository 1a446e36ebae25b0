"""absl-flag scripts: flags -> config -> kerasllm library calls. Run as `python -m trainers.<name>`."""
import os
import sys

# TensorFlow's C++ start-up notices (CUDA probes, oneDNN, CPU features) are not for
# the person running a trainer, and must be silenced before TensorFlow loads;
# --verbosity (or a TF_CPP_MIN_LOG_LEVEL of one's own) keeps them.
if "TF_CPP_MIN_LOG_LEVEL" not in os.environ and not any(
        arg.startswith(("--verbosity", "-v")) for arg in sys.argv[1:]):
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
