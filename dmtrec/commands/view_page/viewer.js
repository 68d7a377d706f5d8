// The page `dmtrec view` serves: a run's mesh.glb under image-based lighting from its probe.hdr,
// seen from its test cameras, with three.js's standard glTF PBR (MeshStandardMaterial).
// Conventions that differ between dmtrec and three.js, and how this page reconciles them:
// - colour: three.js works in linear sRGB and encodes sRGB only on the canvas (no tone mapping),
//   as dmtrec renders linear radiance and encodes sRGB at file IO; GLTFLoader decodes the base
//   colour texture as sRGB and the ORM and normal textures as linear data (glTF's rules);
// - environment: dmtrec's latlong maps direction d to u = atan2(d.x, -d.z) / 2pi + 0.5, three.js's
//   equirectangular map to u = atan2(d.z, d.x) / 2pi + 0.5; the two agree after rotating the
//   environment by +90 degrees about +y (scene.environmentRotation.y = pi / 2);
// - cameras: both are OpenGL cameras (camera-to-world, looking down -z, +y up): the run's c2w is
//   the camera's world matrix, the vertical fov and clip planes come from its projection;
// - occlusion, roughness, metallic, normal map, UVs and tangents are read from the GLB as glTF
//   defines them (dmtrec writes them so: see dmtrec/io/gltf.py).
// ?capture=1 renders every test view into a float render target and POSTs the linear RGBA pixels
// to the server (the cross-render harness, experiments/crossrender/).
import * as THREE from "three";
import { GLTFLoader } from "three/addons/loaders/GLTFLoader.js";
import { HDRLoader } from "three/addons/loaders/HDRLoader.js";
import { OrbitControls } from "three/addons/controls/OrbitControls.js";
import { renderFloat, setView } from "/capture.js";

const params = new URLSearchParams(location.search);
const capture = params.get("capture") === "1";
const envRotation = parseFloat(params.get("env_rotation") ?? "90") * Math.PI / 180;
const status = document.getElementById("status");

async function main() {
  const info = await (await fetch("/info.json")).json();
  document.getElementById("title").textContent = info.name;
  const renderer = new THREE.WebGLRenderer({ antialias: !capture, alpha: true, preserveDrawingBuffer: true });
  renderer.outputColorSpace = THREE.SRGBColorSpace;
  renderer.toneMapping = THREE.NoToneMapping;
  renderer.setPixelRatio(capture ? 1 : window.devicePixelRatio);
  document.body.appendChild(renderer.domElement);

  const scene = new THREE.Scene();
  const hdr = await new HDRLoader().loadAsync("/run/probe.hdr");
  hdr.mapping = THREE.EquirectangularReflectionMapping;
  const pmrem = new THREE.PMREMGenerator(renderer);
  scene.environment = pmrem.fromEquirectangular(hdr).texture;
  scene.environmentRotation.set(0, envRotation, 0);
  scene.backgroundRotation.set(0, envRotation, 0);
  const gltf = await new GLTFLoader().loadAsync("/run/mesh.glb");
  scene.add(gltf.scene);
  if (params.get("debug") === "kd") {  // unlit base colour, to check UVs and colour spaces alone
    gltf.scene.traverse((node) => {
      if (node.isMesh) node.material = new THREE.MeshBasicMaterial({ map: node.material.map });
    });
  }

  const cameras = info.cameras;
  const camera = new THREE.PerspectiveCamera(45, 1, 0.1, 1000);
  if (capture) {
    for (let i = 0; i < cameras.length; i++) {
      const view = cameras[i];
      setView(camera, view);
      renderer.setSize(view.width, view.height, false);
      const pixels = renderFloat(renderer, scene, camera, view);
      await fetch(`/capture/${i}`, { method: "POST", body: pixels });
    }
    await fetch("/capture/done", { method: "POST", body: "" });
    status.textContent = "captured";
    return;
  }

  const select = document.getElementById("views");
  cameras.forEach((view, i) => select.add(new Option(`test ${i}`, String(i))));
  const controls = new OrbitControls(camera, renderer.domElement);
  const background = document.getElementById("background");
  const applyBackground = () => { scene.background = background.checked ? hdr : null; };
  background.onchange = applyBackground;
  applyBackground();
  const resize = () => {
    renderer.setSize(window.innerWidth, window.innerHeight);
    camera.aspect = window.innerWidth / window.innerHeight;
    camera.updateProjectionMatrix();
  };
  select.onchange = () => {
    const index = parseInt(select.value);
    if (index < 0) { controls.enabled = true; return; }
    controls.enabled = false;
    setView(camera, cameras[index]);
    resize();
  };
  camera.position.set(0, 0, 3);
  window.addEventListener("resize", resize);
  resize();
  if (cameras.length && params.get("view") !== null) { select.value = params.get("view"); select.onchange(); }
  status.textContent = `${info.triangles} triangles · drag to orbit`;
  if (params.get("panel") === "0") document.getElementById("panel").classList.add("hidden");
  renderer.setAnimationLoop(() => {
    if (controls.enabled) controls.update();
    renderer.render(scene, camera);
  });
}

main().catch((error) => { status.textContent = `error: ${error}`; console.error(error); });
