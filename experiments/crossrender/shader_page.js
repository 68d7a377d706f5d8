// Shader cross-render page (experiments/crossrender/shaders.py): a dmtrec shading model's exported
// GLSL, unchanged, as the fragment shader of a three.js ShaderMaterial, rendered from each camera
// of /scene.json into a float render target; the linear RGBA pixels are POSTed to /capture/<i>.
// Conventions (see README.md): textures load as an engine loads them (colour PNGs decoded from
// sRGB by the GPU, flipY = false as common.glsl's tex() expects, mipmaps and repeat wrap like
// dmtrec's textures; look-up tables bilinear, clamped, no mipmaps); no tone mapping, no output
// encoding (the GLSL's shade() is linear radiance); both faces drawn (shadingNormal() flips).
// With scene.translated the fragment shader is the HLSL twin translated by shaders.py instead.
import * as THREE from "three";
import { renderFloat, setView } from "/capture.js";

const post = (name, body) => fetch(`/capture/${name}`, { method: "POST", body });

// Fills the interpolants of the twin: the GLSL twin's varyings, or the translated HLSL's f_* (its
// DmtrecFragment fields): world position, world normal, UV, vertex colour.
const vertexShader = ([pos, normal, uv, color]) => `
attribute vec3 vcolor;
varying vec3 ${pos};
varying vec3 ${normal};
varying vec2 ${uv};
varying vec3 ${color};
void main() {
  vec4 world = modelMatrix * vec4(position, 1.0);
  ${pos} = world.xyz;
  ${normal} = mat3(modelMatrix) * normal;
  ${uv} = uv;
  ${color} = vcolor;
  gl_Position = projectionMatrix * viewMatrix * world;
}`;

async function main() {
  const scene = await (await fetch("/scene.json")).json();
  const data = new Float32Array(await (await fetch("/mesh.bin")).arrayBuffer());
  const interleaved = new THREE.InterleavedBuffer(data, 11);
  const geometry = new THREE.BufferGeometry();
  geometry.setAttribute("position", new THREE.InterleavedBufferAttribute(interleaved, 3, 0));
  geometry.setAttribute("normal", new THREE.InterleavedBufferAttribute(interleaved, 3, 3));
  geometry.setAttribute("uv", new THREE.InterleavedBufferAttribute(interleaved, 2, 6));
  geometry.setAttribute("vcolor", new THREE.InterleavedBufferAttribute(interleaved, 3, 8));

  const glsl = await (await fetch(`/asset/${scene.glsl}`)).text();
  const light = scene.light;
  const uniforms = {
    uCameraPos: { value: new THREE.Vector3() },
    uWorldToView: { value: new THREE.Matrix3() },
    uMainLightDir: { value: new THREE.Vector3(...light.main_dir) },
    uMainLightColor: { value: new THREE.Vector3(...light.main_color) },
    uAmbientSH: { value: light.ambient_sh.flat() },
    uUseVertexColor: { value: scene.use_vertex_color },
  };
  const loader = new THREE.TextureLoader();
  for (const [name, info] of Object.entries(scene.textures)) {
    const texture = await loader.loadAsync(`/asset/${info.file}`);
    texture.flipY = false;
    texture.colorSpace = info.encoding === "srgb" ? THREE.SRGBColorSpace : THREE.NoColorSpace;
    if (info.kind === "lut") {
      texture.generateMipmaps = false;
      texture.minFilter = THREE.LinearFilter;
      texture.magFilter = THREE.LinearFilter;
      texture.wrapS = texture.wrapT = THREE.ClampToEdgeWrapping;
    } else {
      texture.wrapS = texture.wrapT = THREE.RepeatWrapping;
    }
    texture.needsUpdate = true;
    uniforms[name] = { value: texture };
    uniforms[`${name}Scale`] = { value: info.scale };
  }
  for (const [name, value] of Object.entries(scene.constants)) {
    uniforms[name] = { value: value.length === 1 ? value[0] : value };
  }
  // The translated HLSL is GLSL ES 3.00 with its own output (glslVersion GLSL3: three.js adds
  // its declarations but no gl_FragColor); the GLSL twin is GLSL ES 1.00 with a main appended.
  const material = new THREE.ShaderMaterial({
    uniforms,
    vertexShader: vertexShader(
      scene.translated ? ["f_worldPos", "f_normal", "f_uv", "f_color"] : ["vWorldPos", "vNormal", "vUv", "vColor"],
    ),
    fragmentShader: scene.translated
      ? await (await fetch("/translated.frag")).text()
      : `${glsl}\nvoid main() { gl_FragColor = vec4(shade(), 1.0); }\n`,
    glslVersion: scene.translated ? THREE.GLSL3 : null,
    side: THREE.DoubleSide,
  });
  const world = new THREE.Scene();
  world.add(new THREE.Mesh(geometry, material));

  const renderer = new THREE.WebGLRenderer({ antialias: false, alpha: true });
  renderer.toneMapping = THREE.NoToneMapping;
  renderer.debug.onShaderError = (gl, program, vs, fs) => {
    post("error", `shader compile: ${gl.getShaderInfoLog(fs)} ${gl.getShaderInfoLog(vs)}`);
  };
  const camera = new THREE.PerspectiveCamera();
  for (let i = 0; i < scene.cameras.length; i++) {
    const view = scene.cameras[i];
    setView(camera, view);
    uniforms.uCameraPos.value.copy(camera.position);
    // GLSL: mat3 column-major (columns of R^T). HLSL: the rows of its row_major float3x3, which
    // the translation reads as the columns of a mat3 it multiplies from the left (v * M).
    uniforms.uWorldToView.value.fromArray(scene.translated ? view.world_to_view_rows : view.world_to_view_column_major);
    const pixels = renderFloat(renderer, world, camera, view);
    await post(String(i), pixels);
  }
  await post("done", "");
}

main().catch((error) => post("error", String(error && error.stack || error)));
