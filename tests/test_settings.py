"""Settings (gigasynth.settings, gigasynth_service.config): one typed class per layer read
from GIGASYNTH_* variables, each value checked with a one-line error naming its variable
(a secret's value never shown), checks across fields, and the settings table of docs/service.md
listing exactly the variables the classes read, with their defaults."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from gigasynth.errors import GigasynthError
from gigasynth.settings import Limits, load_settings
from gigasynth_service.config import ServiceConfig, load_config
from tests.conftest import ROOT

ROW = re.compile(r"^\| `(GIGASYNTH_[A-Z_]+)`(?: / `(GIGASYNTH_[A-Z_]+)`)? \| ([^|]*) \|", re.M)


def readme_table() -> dict[str, str]:
    """The settings table of docs/service.md: {variable: its default column}."""
    rows = {}
    for first, second, default in ROW.findall((ROOT / "docs" / "service.md").read_text()):
        defaults = [d.strip() for d in default.split(" / ")] if second else [default.strip()]
        for variable, value in zip([first, second] if second else [first], defaults, strict=False):
            rows[variable] = value
    return rows


def test_readme_table_lists_every_setting_with_its_default():
    table = readme_table()
    classes = {**Limits.variables(), **ServiceConfig.variables()}
    assert set(table) == set(classes.values()), set(table) ^ set(classes.values())
    defaults = {**Limits().model_dump(), **load_config({}).model_dump()}
    for name, variable in classes.items():
        value = defaults[name]
        if isinstance(value, int | float) and not isinstance(value, bool):
            shown = re.sub(r"[`,]", "", table[variable]).split()[0]
            assert float(shown) == value, (variable, table[variable], value)


def test_values_are_checked_in_one_line_naming_the_variable():
    assert load_settings(Limits, {"GIGASYNTH_MAX_PATCH_PIXELS": "64"}).max_patch_pixels == 64
    for env, message in [
        (
            {"GIGASYNTH_MAX_LAYOUT_PIXELS": "many"},
            "GIGASYNTH_MAX_LAYOUT_PIXELS='many' is not an integer",
        ),
        ({"GIGASYNTH_MAX_DATASET_COUNT": "0"}, "GIGASYNTH_MAX_DATASET_COUNT='0' must be positive"),
    ]:
        with pytest.raises(GigasynthError, match=re.escape(message)):
            load_settings(Limits, env)
    for env, message in [
        ({"GIGASYNTH_DECODE_SLOTS": "0"}, "GIGASYNTH_DECODE_SLOTS='0' must be positive"),
        ({"GIGASYNTH_MAX_SIDE": "8"}, "GIGASYNTH_MAX_SIDE='8' must be at least 16"),
        ({"GIGASYNTH_TILE_CACHE": "-1"}, "GIGASYNTH_TILE_CACHE='-1' must be at least 0"),
        ({"GIGASYNTH_DECODE_WAIT_S": "soon"}, "GIGASYNTH_DECODE_WAIT_S='soon' is not a number"),
        (
            {"GIGASYNTH_LINK_TTL_S": "7200", "GIGASYNTH_LINK_MAX_TTL_S": "3600"},
            "GIGASYNTH_LINK_TTL_S=7200 exceeds GIGASYNTH_LINK_MAX_TTL_S=3600",
        ),
    ]:
        with pytest.raises(GigasynthError, match=re.escape(message)):
            load_config(env)
    with pytest.raises(GigasynthError) as info:
        load_config({"GIGASYNTH_METRICS_TOKEN": "hunter2"})
    assert "hunter2" not in str(info.value) and "at least 32" in str(info.value)
    config = load_config({"GIGASYNTH_CORS_ORIGINS": "https://a, https://b,", "GIGASYNTH_PORT": ""})
    assert config.cors_origins == ("https://a", "https://b") and config.port == 8000


def test_a_library_limit_is_read_once_at_import():
    """A process started with a limit set sees it in the module that enforces it."""
    code = "import gigasynth.cascade.layout as m; print(m.MAX_LAYOUT_PIXELS)"
    env = {**os.environ, "GIGASYNTH_MAX_LAYOUT_PIXELS": "99"}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120
    )
    assert out.stdout.strip() == "99", out.stderr
    env["GIGASYNTH_MAX_LAYOUT_PIXELS"] = "lots"  # the CLI: one line, no traceback
    cli = subprocess.run(
        [sys.executable, "-m", "gigasynth", "info", "--help"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert cli.returncode == 2 and cli.stderr == (
        "gigasynth: error: GIGASYNTH_MAX_LAYOUT_PIXELS='lots' is not an integer\n"
    ), cli.stderr
