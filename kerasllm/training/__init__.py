"""The one training loop every model family uses, and what it needs: strategies,
the optimizer and its schedule, checkpoints, summaries, shared flags."""
