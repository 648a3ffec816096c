"""Library errors name fields, not command-line flags (gigasynth.errors.FieldError); the
CLI words them as its flags and the service as its request's fields."""

from __future__ import annotations

import ast
import pickle
import re
from pathlib import Path

import pytest

from gigasynth.cli import main
from gigasynth.cli.common import flag
from gigasynth.errors import FieldError, GigasynthError
from gigasynth.synth import SynthDiskFull
from gigasynth.synth.engine import check_targets
from gigasynth_service.runner import public_error, request_words

PACKAGE = Path(__file__).resolve().parents[1] / "gigasynth"
FLAG = re.compile(r"(?<![\w-])--[a-z][a-z0-9-]*")
# A shell command a message suggests (`pip install --no-deps ...`) names pip's flags, not ours.
SHELL_COMMAND = re.compile(r"\bpip install\b")


def _messages(path: Path) -> list[tuple[int, str]]:
    """Every string in the module but its docstrings: what a message can be built from."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
        and ast.get_docstring(node) is not None
    }
    return [
        (node.lineno, node.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant)
        and isinstance(node.value, str)
        and id(node) not in docstrings
    ]


def test_no_library_message_names_a_flag():
    """Outside cli/, no string a message is made of names a flag such as --resume."""
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        part = path.relative_to(PACKAGE).parts[0]
        if part == "cli":
            continue
        found += [
            f"{path.relative_to(PACKAGE)}:{line}: {FLAG.findall(text)}"
            for line, text in _messages(path)
            if FLAG.search(text) and not SHELL_COMMAND.search(text)
        ]
    assert found == [], "\n".join(found)
    # The pattern sees a flag where there is one, and not a dash inside a word.
    assert FLAG.findall("pass --resume or --work-dir DIR (x--y)") == ["--resume", "--work-dir"]


def test_each_front_end_words_the_fields_its_own_way(tmp_path, capsys):
    error = FieldError("[work_dir] is full", "pass [overwrite] or skip it ([preflight])")
    assert str(error) == "work_dir is full; pass overwrite or skip it (preflight)"
    assert error.render(flag) == "--work-dir is full; pass --overwrite or skip it (--no-preflight)"
    assert error.render(flag, advice=False) == "--work-dir is full"
    assert error.advice_fields == ["overwrite", "preflight"]
    # The command line: a library FieldError as one line with this command's flags.
    (tmp_path / "old.ome.zarr").mkdir()
    code = main(
        ["synth", "--checkpoint", "builtin:tiny-pathology", "--size", "32x32"]
        + ["--out", str(tmp_path / "old.ome.zarr")]
    )
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.endswith("old.ome.zarr exists; pass --overwrite to replace it"), err


def test_a_field_error_keeps_its_fields_through_pickling():
    """Errors raised in Dask tasks are pickled; the front end still words their fields."""
    error = pickle.loads(pickle.dumps(FieldError("[tile] 6 is too small", "use [tile] 8")))
    assert error.render(flag) == "--tile 6 is too small; use --tile 8"
    full = pickle.loads(pickle.dumps(SynthDiskFull("disk full", 3, 8, "rerun with [resume]")))
    assert (full.saved_step, full.total_steps) == (3, 8)
    assert full.render(flag) == "disk full; rerun with --resume"


def test_the_service_words_them_without_regular_expressions(tmp_path):
    """Advice the request cannot follow (resume, overwrite) goes, whatever its punctuation;
    the fields it has are named as it names them."""
    target = tmp_path / "x.ome.zarr"
    target.mkdir()
    with pytest.raises(FieldError) as exists:
        check_targets(target, None, None, overwrite=False)
    assert public_error(request_words(exists.value)) == "x.ome.zarr exists"
    size = FieldError("a generated layout needs the slide's [size] (width x height)")
    assert request_words(size) == (
        "a generated layout needs the slide's width and height (width x height)"
    )
    steps = FieldError("too many steps", "use [sampler] ddim with fewer [steps]")
    assert request_words(steps) == "too many steps; use sampler ddim with fewer steps"
    assert request_words(GigasynthError("plain --words stay")) == "plain --words stay"
