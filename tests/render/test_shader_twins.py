"""The HLSL twins of the built-in game models, and the export of both twins.

The HLSL files are checked where ``glslangValidator`` (Debian's ``glslang-tools``) is installed:
it compiles HLSL (``-D``) to SPIR-V, so a syntax or type error fails; CI without it skips those.
The GLSL twins are compiled the same way (``#version 100``, the fragment shader the cross-render
page builds), so a twin that three.js would reject fails here too.
"""

import re
import shutil
import subprocess

import pytest

from dmtrec.render.shaders import BUILTINS, GAME_MODELS, load_shader
from dmtrec.render.shaders.export import twin_sources, write_twins

VALIDATOR = shutil.which("glslangValidator")
needs_validator = pytest.mark.skipif(VALIDATOR is None, reason="glslangValidator not installed (glslang-tools)")
HLSL_MAIN = "\nfloat4 main(DmtrecFragment f) : SV_Target { return float4(shade(f), 1.0); }\n"
GLSL_MAIN = "\nvoid main() { gl_FragColor = vec4(shade(), 1.0); }\n"


def compile_shader(tmp_path, text: str, hlsl: bool) -> subprocess.CompletedProcess:
    source = tmp_path / ("shader.hlsl" if hlsl else "shader.frag")
    source.write_text(text)
    flags = ["-D", "-S", "frag", "-e", "main", "-V", "-o", str(tmp_path / "shader.spv")] if hlsl else []
    return subprocess.run([VALIDATOR, *flags, str(source)], capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("name", GAME_MODELS)
def test_every_game_model_has_an_hlsl_twin_with_its_glsl_uniforms(name):
    model = load_shader(name)
    hlsl, glsl = model.hlsl_source(), model.glsl_source()
    assert "float3 shade(DmtrecFragment f)" in hlsl
    for param in model.params:
        if param.kind == "constant":
            assert re.search(rf"uniform \w+ {param.name}[;\[]", hlsl), param.name
        else:
            assert f"Texture2D {param.name};" in hlsl and f"SamplerState {param.name}_sampler;" in hlsl, param.name
    # Every uniform the GLSL twin declares, the HLSL twin declares under the same name.
    glsl_names = set(re.findall(r"uniform \w+ (\w+)", glsl))
    hlsl_names = set(re.findall(r"(?:uniform [\w ]+|Texture2D) (\w+)", hlsl))
    assert glsl_names <= hlsl_names, glsl_names - hlsl_names


def test_write_twins_puts_the_common_part_first_and_skips_missing_languages(tmp_path):
    written = write_twins(load_shader("toon"), tmp_path)
    assert written == {"glsl": "toon.glsl", "hlsl": "toon.hlsl"}
    hlsl = (tmp_path / "toon.hlsl").read_text()
    assert hlsl.index("float3 ambientSH(float3 n)") < hlsl.index("float3 shade(DmtrecFragment f)")
    glsl = (tmp_path / "toon.glsl").read_text()
    assert glsl.index("vec3 ambientSH(vec3 n)") < glsl.index("vec3 shade()")
    # pbr has a GLSL twin only (its split-sum tables have no HLSL counterpart yet).
    assert write_twins(BUILTINS["pbr"](), tmp_path) == {"glsl": "pbr.glsl", "hlsl": None}
    assert not (tmp_path / "pbr.hlsl").exists()


@needs_validator
@pytest.mark.parametrize("name", GAME_MODELS)
def test_hlsl_twin_compiles(tmp_path, name):
    done = compile_shader(tmp_path, twin_sources(load_shader(name))["hlsl"] + HLSL_MAIN, hlsl=True)
    assert done.returncode == 0, done.stdout + done.stderr


@needs_validator
@pytest.mark.parametrize("name", GAME_MODELS)
def test_glsl_twin_compiles(tmp_path, name):
    done = compile_shader(tmp_path, "#version 100\n" + twin_sources(load_shader(name))["glsl"] + GLSL_MAIN, hlsl=False)
    assert done.returncode == 0, done.stdout + done.stderr


@needs_validator
def test_the_compile_check_fails_on_a_planted_error(tmp_path):
    hlsl = twin_sources(load_shader("matcap"))["hlsl"].replace("saturate(", "saturat(")
    done = compile_shader(tmp_path, hlsl + HLSL_MAIN, hlsl=True)
    assert done.returncode != 0 and "saturat" in done.stdout
