"""User shading models from files (``FILE.py:ClassName``): the shipped example loads and checks,
broken files are one line naming the file."""

import textwrap

import pytest
from common import REPO

from dmtrec.cli import main
from dmtrec.render.shaders import load_shader
from dmtrec.render.shaders.check import check_model

EXAMPLE = REPO / "experiments" / "shaders" / "half_lambert.py"

_HEADER = "from dmtrec.render.shaders import Param, ShadingModel\n"
_PARAMS = '    params = (Param("albedo", "texture", 3, 0.0, 1.0, 0.5),)\n    needs_light = False\n'


def test_the_example_loads_and_its_derivatives_check():
    model = load_shader(f"{EXAMPLE}:HalfLambert")
    assert model.source == str(EXAMPLE)
    assert check_model(model).ok


@pytest.mark.parametrize(
    "body, spec_class, message",
    [
        ("", "Missing", "defines no class 'Missing'"),
        ("class NotAModel:\n    pass\n", "NotAModel", "NotAModel is not a ShadingModel subclass"),
        (
            f"class Flat(ShadingModel):\n{_PARAMS}    def shade(self, g, p):\n        return p['albedo'][..., 0]\n",
            "Flat",
            "Flat.shade returned (1, 16, 1), expected (1, 16, 1, 3)",
        ),
        (
            f"class Nan(ShadingModel):\n{_PARAMS}    def shade(self, g, p):\n        return p['albedo'] / 0 * 0\n",
            "Nan",
            "Nan.shade returned NaN or infinite values",
        ),
        ("import no_such_module_here\n", "X", "could not be imported (ModuleNotFoundError"),
    ],
)
def test_a_broken_user_model_is_one_line_naming_the_file(tmp_path, capsys, body, spec_class, message):
    path = tmp_path / "mine.py"
    path.write_text(_HEADER + textwrap.dedent(body))
    with pytest.raises(ValueError) as info:
        load_shader(f"{path}:{spec_class}")
    assert str(info.value).startswith(f"{path}: ") and message in str(info.value)
    assert main(["shader-check", f"{path}:{spec_class}"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"dmtrec shader-check: error: {path}: ")


def test_a_missing_file_or_a_bad_spec_is_one_line(tmp_path):
    with pytest.raises(FileNotFoundError, match=f"{tmp_path / 'none.py'}: shading model file not found"):
        load_shader(f"{tmp_path / 'none.py'}:X")
    with pytest.raises(ValueError, match="not a shading model"):
        load_shader("no_such_model")
