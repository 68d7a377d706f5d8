// Skinning cross-check page (experiments/crossrender/skinning.py): /asset/asset.glb loaded by
// three.js's GLTFLoader, its animation posed with AnimationMixer.setTime at each time of
// /scene.json, and every skinned mesh's vertices read back through SkinnedMesh.getVertexPosition
// (which applies applyBoneTransform: bind matrix, bone world matrices times inverses, weights)
// and the mesh's world matrix. POSTs /capture/t<k>: Float32 [N, 6] per vertex (bind-shape
// position as stored, posed world position), and /capture/shot: a PNG of the posed frame.
import * as THREE from "three";
import { GLTFLoader } from "three/addons/loaders/GLTFLoader.js";

const post = (name, body) => fetch(`/capture/${name}`, { method: "POST", body });

async function main() {
  const scene = await (await fetch("/scene.json")).json();
  const gltf = await new GLTFLoader().loadAsync("/asset/asset.glb");
  const clip = gltf.animations.find((a) => a.name === scene.animation);
  if (!clip) throw new Error(`no animation ${scene.animation} in the GLB (${gltf.animations.map((a) => a.name)})`);
  const mixer = new THREE.AnimationMixer(gltf.scene);
  mixer.clipAction(clip).play();
  const meshes = [];
  gltf.scene.traverse((node) => { if (node.isSkinnedMesh) meshes.push(node); });
  if (!meshes.length) throw new Error("no SkinnedMesh in the GLB");

  const pose = (time) => {
    mixer.setTime(time);
    gltf.scene.updateMatrixWorld(true);
  };
  for (let k = 0; k < scene.times.length; k++) {
    pose(scene.times[k]);
    const count = meshes.reduce((n, m) => n + m.geometry.attributes.position.count, 0);
    const out = new Float32Array(count * 6);
    const bind = new THREE.Vector3(), posed = new THREE.Vector3();
    let row = 0;
    for (const mesh of meshes) {
      const position = mesh.geometry.attributes.position;
      for (let i = 0; i < position.count; i++, row++) {
        bind.fromBufferAttribute(position, i);
        mesh.getVertexPosition(i, posed).applyMatrix4(mesh.matrixWorld);
        out.set([bind.x, bind.y, bind.z, posed.x, posed.y, posed.z], row * 6);
      }
    }
    await post(`t${k}`, out);
  }

  if (scene.shot_width > 0) await screenshot(scene, gltf, pose);
  await post("done", "");
}

// A screenshot of the posed frame: the GLB's own PBR material under a sky light and a sun.
async function screenshot(scene, gltf, pose) {
  pose(scene.shot_time);
  const world = new THREE.Scene();
  world.background = new THREE.Color(0xf0f0f0);
  world.add(gltf.scene);
  world.add(new THREE.HemisphereLight(0xffffff, 0x606060, 2.0));
  const sun = new THREE.DirectionalLight(0xffffff, 2.0);
  sun.position.set(1, 2, 3);
  world.add(sun);
  const box = new THREE.Box3().setFromObject(gltf.scene, true);
  const centre = box.getCenter(new THREE.Vector3());
  const size = box.getSize(new THREE.Vector3()).length();
  const camera = new THREE.PerspectiveCamera(35, scene.shot_width / scene.shot_height, size * 0.05, size * 10);
  camera.position.copy(centre).add(new THREE.Vector3(0.9, 0.35, 1.6).normalize().multiplyScalar(size * 1.9));
  camera.lookAt(centre);
  const renderer = new THREE.WebGLRenderer({ antialias: true, preserveDrawingBuffer: true });
  renderer.outputColorSpace = THREE.SRGBColorSpace;
  renderer.setSize(scene.shot_width, scene.shot_height, false);
  document.body.appendChild(renderer.domElement);
  renderer.render(world, camera);
  const png = await new Promise((resolve) => renderer.domElement.toBlob(resolve, "image/png"));
  await post("shot", png);
}

main().catch((error) => post("error", String((error && error.stack) || error)));
