"""Settings read from the environment (GIGASYNTH_* variables), typed and checked in one
place with pydantic-settings: the library's limits here (`Limits`, read once at import as
`LIMITS`), the service's in gigasynth_service.config (`ServiceConfig`). A malformed value
is one line naming the variable (`settings_error`); an unset or empty one is the default.
The README's settings table lists every variable of both (tests/test_settings.py).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, TypeVar

from pydantic import PositiveInt, ValidationError
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from gigasynth.errors import GigasynthError

PREFIX = "GIGASYNTH_"
SECRETS = frozenset({"signing_key", "metrics_token"})  # fields whose values no error shows
# An environment to read instead of os.environ (load_settings(..., env)), while it loads.
_GIVEN_ENV: ContextVar[Mapping[str, str] | None] = ContextVar("gigasynth_env", default=None)


class _GivenEnv(EnvSettingsSource):
    """pydantic-settings' environment source, over a given mapping instead of os.environ."""

    def __init__(self, settings_cls: type[BaseSettings], env: Mapping[str, str]) -> None:
        self._given = env
        super().__init__(settings_cls)

    def _load_env_vars(self) -> Mapping[str, str | None]:
        case = bool(self.case_sensitive)
        return {
            (k if case else k.lower()): v
            for k, v in self._given.items()
            if not (self.env_ignore_empty and v == "")
        }


class EnvSettings(BaseSettings):
    """The base of the settings classes: GIGASYNTH_* variables, empty = unset, frozen;
    values given to the constructor win over the environment."""

    model_config = SettingsConfigDict(
        env_prefix=PREFIX, env_ignore_empty=True, frozen=True, extra="ignore"
    )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        given = _GIVEN_ENV.get()
        return (init_settings, env_settings if given is None else _GivenEnv(settings_cls, given))

    @classmethod
    def variables(cls) -> dict[str, str]:
        """Each field's environment variable: {field name: variable}."""
        out = {}
        for name, field in cls.model_fields.items():
            alias = field.validation_alias
            out[name] = alias if isinstance(alias, str) else PREFIX + name.upper()
        return out


def _problem(error: Mapping[str, Any]) -> str:
    """What is wrong with a value, in this project's words."""
    kind, ctx = error.get("type", ""), error.get("ctx") or {}
    if kind == "int_parsing":
        return "is not an integer"
    if kind == "float_parsing":
        return "is not a number"
    if kind == "greater_than" and ctx.get("gt") == 0:
        return "must be positive"
    if kind in ("greater_than_equal", "greater_than"):
        return f"must be at least {ctx.get('ge', ctx.get('gt'))}"
    if kind == "less_than_equal":
        return f"must be at most {ctx.get('le')}"
    if kind in ("too_short", "string_too_short", "bytes_too_short"):
        return f"must be at least {ctx.get('min_length')} characters"
    return str(error.get("msg", "is invalid")).removeprefix("Value error, ")


def settings_error(cls: type[EnvSettings], exc: ValidationError) -> GigasynthError:
    """The first problem of a ValidationError as one line naming its variable (and its
    value, unless the variable holds a secret)."""
    error = exc.errors()[0]
    loc = error.get("loc", ())
    name = str(loc[0]) if loc else ""
    variable = cls.variables().get(name, name if name.startswith(PREFIX) else None)
    if variable is None:  # a check across fields: its message names them
        return GigasynthError(_problem(error))
    shown = "" if name in SECRETS else f"={error.get('input')!r}"
    return GigasynthError(f"{variable}{shown} {_problem(error)}")


Settings = TypeVar("Settings", bound=EnvSettings)


@contextmanager
def _reading(env: Mapping[str, str] | None) -> Iterator[None]:
    """While the block runs, settings classes read `env` (None: os.environ)."""
    token = _GIVEN_ENV.set(env)
    try:
        yield
    finally:
        _GIVEN_ENV.reset(token)


def load_settings(cls: type[Settings], env: Mapping[str, str] | None = None) -> Settings:
    """`cls` read from `env` (os.environ by default); one-line GigasynthError otherwise."""
    with _reading(env):
        try:
            return cls()
        except ValidationError as exc:
            raise settings_error(cls, exc) from None


class Limits(EnvSettings):
    """The library's limits on what one call may ask for."""

    max_layout_pixels: PositiveInt = 1 << 26  # a cascade layout's pixels, read whole
    max_dataset_count: PositiveInt = 10_000_000  # patches of one synthetic data set
    max_patch_pixels: PositiveInt = 4096 * 4096  # pixels of one data-set patch


LIMITS = load_settings(Limits)
