"""The absl `main` every trainer shares: bad input ends the run with one line."""


def one_line_errors_main(trainer, run, errors):
    """A `main(argv)` for `absl.app.run` that calls `run()`.

    An exception of the types in `errors` (problems with the user's flags, files or
    model_dir, each named in its message) ends the process with the single line
    `<trainer>: error: <message>`: a stack trace would only bury it.
    """

    def main(argv):
        del argv
        try:
            run()
        except errors as error:
            raise SystemExit(f"{trainer}: error: {error}") from None

    return main
