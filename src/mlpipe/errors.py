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
