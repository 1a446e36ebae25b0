"""Training counted in epochs: how many optimizer steps an epoch and the run take,
and a TrainConfig whose evaluations and checkpoints fall on epoch ends."""
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

    def epoch(self, step):
        """The epochs `step` optimizer steps make: whole at an epoch's end, else with
        the share of the current one (1.5)."""
        return step / self.steps_per_epoch if step % self.steps_per_epoch else \
            step // self.steps_per_epoch

    def train_config(self, config, checkpoint_every=None):
        """`config` running this schedule: `total_steps` steps, an evaluation at every
        epoch's end (and the last step), and a checkpoint every `checkpoint_every`
        steps (default: every epoch)."""
        return config.replace(train_steps=self.total_steps, eval_every=self.steps_per_epoch,
                              checkpoint_every=checkpoint_every or self.steps_per_epoch)
