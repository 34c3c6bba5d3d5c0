"""Errors a user can fix. Stages turn them into one line on stderr and a non-zero exit."""


class PipelineError(Exception):
    """A problem in the user's data, params or environment, with a message that says how to fix it."""


class ConfigError(PipelineError):
    """params.yaml holds a value the pipeline cannot use."""


class DataError(PipelineError):
    """A data source or table is missing, unreadable or does not fit the declared schema."""


class OutputError(PipelineError):
    """An output cannot be written (disk full, file-size limit, permissions)."""


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (libraries' messages can run to pages)."""
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


class ArtifactError(PipelineError):
    """A file the pipeline itself wrote earlier (metrics, drift.json, schema.json, the model, the
    prediction log) is corrupt or truncated: rebuild it, never read it as a verdict."""


# Exit statuses of the `mlpipe` commands, one place for code and docs. Stages exit 0, 1 (a user
# error, any PipelineError) or EXIT_CORRUPT; DVC only cares that it is non-zero.
EXIT_OK = 0
EXIT_FINDING = 1  # the gate's answer: retraining recommended, a guarded regression, a failed experiment
EXIT_USAGE = 2  # a user error: a bad argument, a missing file, params or data the command cannot use
EXIT_CORRUPT = 3  # a file the pipeline wrote is corrupt or truncated (ArtifactError): rebuild it
EXIT_INTERRUPTED = 130

# What each status means, worded once: `mlpipe --help` prints it and a test holds
# docs/troubleshooting.md's table to it.
EXIT_MEANINGS = {
    EXIT_OK: "done: no retraining needed, every guard passed, every experiment succeeded",
    EXIT_FINDING: "the gate's finding: retraining recommended (monitor), a guarded regression (review), a failed experiment (sweep)",
    EXIT_USAGE: "a user error: a bad argument, a missing file, params or data the command cannot use, rows the service refused (replay)",
    EXIT_CORRUPT: "a file the pipeline wrote is corrupt or truncated (metrics/drift.json, a metrics file): rebuild it as the message says",
    EXIT_INTERRUPTED: "interrupted (Ctrl-C)",
}


def exit_status(exc: PipelineError) -> int:
    """The exit status of a command that stopped on `exc`: a corrupt file the pipeline wrote is not
    the user's input, and a CI gate must not read it as a finding either."""
    return EXIT_CORRUPT if isinstance(exc, ArtifactError) else EXIT_USAGE
