"""How kerasllm's commands (trainers, the gateway, the evaluation runners) end on a
user's mistake: one line `<command>: error: <message>`, never a stack trace that would
bury the message."""
from absl import app, flags

from kerasllm.errors import KerasLLMError


def run_command(name, run, prepare=None, missing_extra=None):
    """absl's app.run of `run(flags.FLAGS)` for command `name`: stray arguments are a
    usage error, a KerasLLMError ends the process with its one line. `prepare()` runs
    first (e.g. logging set-up); with `missing_extra` an ImportError says which
    extra to install."""

    def run_with_one_line_errors(argv):
        if len(argv) > 1:
            raise app.UsageError(f"unexpected arguments {argv[1:]}; flags start with --")
        if prepare is not None:
            prepare()
        try:
            run(flags.FLAGS)
        except KerasLLMError as error:
            raise SystemExit(f"{name}: error: {error}") from None
        except ImportError as error:
            if missing_extra is None:
                raise
            raise SystemExit(f"{name}: error: {error}; pip install -e "
                             f"'.[{missing_extra}]'") from None

    app.run(run_with_one_line_errors)
