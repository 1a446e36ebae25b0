"""The one training loop every model family uses (loop.py, and its parts: state,
checkpoints, input_position, step, progress, faults, preemption), and what it
needs: the strategy, the optimizer, the learning-rate schedule (schedule.py), the
run's settings (config.py; epochs.py counts them in epochs), seeding."""
