"""Training counted in epochs: how many optimizer steps an epoch and the run take,
and a TrainConfig whose progress lines and checkpoints fall on epoch ends, where a
trainer scores the model."""
import dataclasses

from kerasllm.errors import DataError


@dataclasses.dataclass(frozen=True)
class EpochSchedule:
    """`epochs` epochs of `steps_per_epoch` optimizer steps, the run capped at
    `max_steps` (None: no cap)."""

    steps_per_epoch: int
    epochs: int
    max_steps: int | None = None

    @classmethod
    def for_examples(cls, num_examples, batch_size, epochs, steps_per_epoch=None,
                     max_steps=None):
        """An epoch is one pass over `num_examples` in batches of `batch_size` (the
        remainder dropped), unless `steps_per_epoch` says otherwise.

        Raises:
          DataError: the examples cannot fill one batch.
        """
        steps = steps_per_epoch or num_examples // batch_size
        if steps < 1:
            raise DataError(f"{num_examples} training examples cannot fill one batch of "
                            f"{batch_size}; use a smaller --batch_size")
        return cls(steps, epochs, max_steps)

    @property
    def total_steps(self):
        total = self.epochs * self.steps_per_epoch
        return total if self.max_steps is None else min(total, self.max_steps)

    def completed_epochs(self, step):
        """Whole epochs done after `step` optimizer steps."""
        return step // self.steps_per_epoch

    def ends_epoch(self, step):
        return step % self.steps_per_epoch == 0

    def train_config(self, config, checkpoint_every=None):
        """`config` running this schedule: `total_steps` steps, progress lines every
        `config.log_every` steps or more often so that one falls on every epoch
        end (the loop's `on_log` hook scores the model there), and a checkpoint
        every `checkpoint_every` steps (default: every epoch)."""
        return config.replace(
            train_steps=self.total_steps,
            log_every=_largest_divisor_at_most(self.steps_per_epoch, config.log_every),
            checkpoint_every=checkpoint_every or self.steps_per_epoch)


def _largest_divisor_at_most(number, limit):
    """The largest divisor of `number` that is <= `limit` (at least 1)."""
    return max(d for d in range(1, min(number, limit) + 1) if number % d == 0)
