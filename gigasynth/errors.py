"""The one exception type users see: a plain, one-line message naming the problem."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

_FIELD = re.compile(r"\[([a-z][a-z0-9_]*)\]")


class GigasynthError(Exception):
    """Bad input or an unusable resource; the CLI prints it as one line and exits non-zero."""


class FieldError(GigasynthError):
    """A GigasynthError whose message names the caller's inputs as fields, so that each
    front end words them its own way (the command line as its flags, the service as its
    request's fields); library messages name no command-line flag (a test scans).

    The template writes a field as `[field]` (the library's parameter or spec field:
    `[overwrite]`, `[halo_every]`); `advice`, when given, is what the caller may do about
    it, kept apart so that a front end without those inputs can leave it out. `str()` is
    the message with the bare field names.
    """

    def __init__(self, template: str, advice: str | None = None) -> None:
        self.template = template
        self.advice = advice
        super().__init__(self.render(str))

    def __reduce__(self) -> tuple[Any, ...]:
        """Pickled with its template, advice and any fields a subclass adds, so an error
        raised in a Dask task reaches the front end still able to word its fields."""
        return (_restore, (type(self), self.args, self.__dict__))

    @property
    def advice_fields(self) -> list[str]:
        """The fields the advice names, in order."""
        return _FIELD.findall(self.advice or "")

    def render(self, name: Callable[[str], str], advice: bool = True) -> str:
        """The message with each `[field]` replaced by name(field), and the advice after
        a semicolon unless `advice` is False."""
        text = _FIELD.sub(lambda m: name(m[1]), self.template)
        if advice and self.advice:
            text += "; " + _FIELD.sub(lambda m: name(m[1]), self.advice)
        return text


def _restore(cls: type[FieldError], args: tuple[Any, ...], state: dict[str, Any]) -> FieldError:
    """A FieldError (or subclass) as pickled, without calling its __init__ again."""
    error = cls.__new__(cls)
    error.args = args
    error.__dict__.update(state)
    return error
