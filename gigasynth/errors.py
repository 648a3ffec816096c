"""The one exception type users see: a plain, one-line message naming the problem."""


class GigasynthError(Exception):
    """Bad input or an unusable resource; the CLI prints it as one line and exits non-zero."""
