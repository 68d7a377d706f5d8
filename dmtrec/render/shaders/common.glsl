// dmtrec shading models: what every GLSL twin shares (prepend it to a model's file).
// Inputs in world space, as dmtrec's G-buffer: the varyings below, the probe's main light
// (direction towards it, colour with Lambert's 1/pi folded in) and its ambient order-2 SH
// (9 RGB coefficients, Sloan's ordering; dmtrec writes them to material.json).
precision highp float;

varying vec3 vWorldPos;     // world position
varying vec3 vNormal;       // interpolated normal (normalise; flip to face the viewer)
varying vec2 vUv;           // texture coordinates (OBJ convention: v up)
varying vec3 vColor;        // vertex colour (white without one)

uniform vec3 uCameraPos;    // camera centre, world
uniform mat3 uWorldToView;  // rotation into the camera frame (x right, y up, z back)
uniform vec3 uMainLightDir;
uniform vec3 uMainLightColor;
uniform vec3 uAmbientSH[9];

// Ramamoorthi and Hanrahan 2001: irradiance of the SH radiance, divided by pi (diffuse per albedo).
vec3 ambientSH(vec3 n) {
    const float A0 = 3.14159265, A1 = 2.09439510, A2 = 0.78539816;
    vec3 e = A0 * 0.282095 * uAmbientSH[0]
        + A1 * 0.488603 * (n.y * uAmbientSH[1] + n.z * uAmbientSH[2] + n.x * uAmbientSH[3])
        + A2 * (1.092548 * (n.x * n.y * uAmbientSH[4] + n.y * n.z * uAmbientSH[5] + n.x * n.z * uAmbientSH[7])
                + 0.315392 * (3.0 * n.z * n.z - 1.0) * uAmbientSH[6]
                + 0.546274 * (n.x * n.x - n.y * n.y) * uAmbientSH[8]);
    return max(e, vec3(0.0)) / 3.14159265;
}

vec3 shadingNormal() {
    vec3 n = normalize(vNormal);
    return dot(n, uCameraPos - vWorldPos) < 0.0 ? -n : n;  // two-sided, as dmtrec
}

// Textures are stored as images (row 0 = top, v = 1), like dmtrec's PNGs with flipY = false.
vec4 tex(sampler2D t, vec2 uv) { return texture2D(t, vec2(uv.x, 1.0 - uv.y)); }
