// Shader cross-render page (experiments/crossrender/shaders.py): a dmtrec shading model's exported
// GLSL, unchanged, as the fragment shader of a three.js ShaderMaterial, rendered from each camera
// of /scene.json into a float render target; the linear RGBA pixels are POSTed to /capture/<i>.
// Conventions (see README.md): textures load as an engine loads them (colour PNGs decoded from
// sRGB by the GPU, flipY = false as common.glsl's tex() expects, mipmaps and repeat wrap like
// dmtrec's textures; look-up tables bilinear, clamped, no mipmaps); no tone mapping, no output
// encoding (the GLSL's shade() is linear radiance); both faces drawn (shadingNormal() flips).
// With scene.translated the fragment shader is the HLSL twin translated by shaders.py instead.
import * as THREE from "three";

const post = (name, body) => fetch(`/capture/${name}`, { method: "POST", body });

const vertexShader = `
attribute vec3 vcolor;
varying vec3 vWorldPos;
varying vec3 vNormal;
varying vec2 vUv;
varying vec3 vColor;
void main() {
  vec4 world = modelMatrix * vec4(position, 1.0);
  vWorldPos = world.xyz;
  vNormal = mat3(modelMatrix) * normal;
  vUv = uv;
  vColor = vcolor;
  gl_Position = projectionMatrix * viewMatrix * world;
}`;

// The HLSL twin, translated to GLSL ES 3.00 (shaders.py --language hlsl): interpolants f_*.
const rawVertexShader = `
in vec3 position;
in vec3 normal;
in vec2 uv;
in vec3 vcolor;
uniform mat4 modelMatrix;
uniform mat4 viewMatrix;
uniform mat4 projectionMatrix;
out vec3 f_worldPos;
out vec3 f_normal;
out vec2 f_uv;
out vec3 f_color;
void main() {
  vec4 world = modelMatrix * vec4(position, 1.0);
  f_worldPos = world.xyz;
  f_normal = mat3(modelMatrix) * normal;
  f_uv = uv;
  f_color = vcolor;
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
  const material = scene.translated
    ? new THREE.RawShaderMaterial({
      uniforms,
      vertexShader: rawVertexShader,
      fragmentShader: await (await fetch("/translated.frag")).text(),
      glslVersion: THREE.GLSL3,
      side: THREE.DoubleSide,
    })
    : new THREE.ShaderMaterial({
      uniforms,
      vertexShader,
      fragmentShader: `${glsl}\nvoid main() { gl_FragColor = vec4(shade(), 1.0); }\n`,
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
    new THREE.Matrix4().fromArray(view.c2w_column_major).decompose(camera.position, camera.quaternion, camera.scale);
    camera.fov = view.fovy_deg;
    camera.aspect = view.width / view.height;
    camera.near = view.near;
    camera.far = view.far;
    camera.updateProjectionMatrix();
    camera.updateMatrixWorld();
    uniforms.uCameraPos.value.copy(camera.position);
    // GLSL: mat3 column-major (columns of R^T). HLSL: the rows of its row_major float3x3, which
    // the translation reads as the columns of a mat3 it multiplies from the left (v * M).
    uniforms.uWorldToView.value.fromArray(scene.translated ? view.world_to_view_rows : view.world_to_view_column_major);
    const target = new THREE.WebGLRenderTarget(view.width, view.height, { type: THREE.FloatType, samples: 0 });
    renderer.setRenderTarget(target);
    renderer.setClearColor(0x000000, 0);
    renderer.clear();
    renderer.render(world, camera);
    const pixels = new Float32Array(view.width * view.height * 4);
    renderer.readRenderTargetPixels(target, 0, 0, view.width, view.height, pixels);
    renderer.setRenderTarget(null);
    target.dispose();
    await post(String(i), pixels);
  }
  await post("done", "");
}

main().catch((error) => post("error", String(error && error.stack || error)));
