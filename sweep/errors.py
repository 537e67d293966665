"""The one exception type the CLI turns into a single line and exit code 2."""


class SweepError(Exception):
    """Bad input or an impossible request: the message says what was wrong and what is allowed."""
