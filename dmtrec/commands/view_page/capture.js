// What the page `dmtrec view` serves and the cross-render harnesses' pages (experiments/crossrender)
// share: a three.js camera set from one of the page's camera records, and a render into a float
// render target read back as linear RGBA (rows bottom to top, as readPixels gives them).
import * as THREE from "three";

// The record's camera-to-world matrix (column-major), vertical fov, aspect and clip planes.
export function setView(camera, view) {
  new THREE.Matrix4().fromArray(view.c2w_column_major).decompose(camera.position, camera.quaternion, camera.scale);
  camera.fov = view.fovy_deg;
  camera.aspect = view.width / view.height;
  camera.near = view.near;
  camera.far = view.far;
  camera.updateProjectionMatrix();
  camera.updateMatrixWorld();
}

// Float32Array [height * width * 4] of `scene` seen by `camera` at the record's size, over
// transparent black, without antialiasing.
export function renderFloat(renderer, scene, camera, view) {
  const target = new THREE.WebGLRenderTarget(view.width, view.height, { type: THREE.FloatType, samples: 0 });
  renderer.setRenderTarget(target);
  renderer.setClearColor(0x000000, 0);
  renderer.clear();
  renderer.render(scene, camera);
  const pixels = new Float32Array(view.width * view.height * 4);
  renderer.readRenderTargetPixels(target, 0, 0, view.width, view.height, pixels);
  renderer.setRenderTarget(null);
  target.dispose();
  return pixels;
}
