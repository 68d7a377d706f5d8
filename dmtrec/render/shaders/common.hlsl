// dmtrec shading models in HLSL: what every twin shares (put it before a model's file), the
// same inputs and formulas as common.glsl. Inputs in world space, as dmtrec's G-buffer: the
// interpolants of DmtrecFragment, the probe's main light (direction towards it, colour with
// Lambert's 1/pi folded in) and its ambient order-2 SH (9 RGB coefficients, Sloan's ordering;
// dmtrec writes them to material.json). Global uniforms land in the $Globals constant buffer
// (each float3 array element takes a 16-byte register); bind them as your engine does.

struct DmtrecFragment {
    float3 worldPos : TEXCOORD0;  // world position
    float3 normal   : TEXCOORD1;  // interpolated normal (normalise; flip to face the viewer)
    float2 uv       : TEXCOORD2;  // texture coordinates (OBJ convention: v up)
    float3 color    : TEXCOORD3;  // vertex colour (white without one)
};

uniform float3 uCameraPos;                // camera centre, world
uniform row_major float3x3 uWorldToView;  // rows: the camera's right, up and back axes (world)
uniform float3 uMainLightDir;
uniform float3 uMainLightColor;
uniform float3 uAmbientSH[9];

// Ramamoorthi and Hanrahan 2001: irradiance of the SH radiance, divided by pi (diffuse per albedo).
float3 ambientSH(float3 n) {
    const float A0 = 3.14159265, A1 = 2.09439510, A2 = 0.78539816;
    float3 e = A0 * 0.282095 * uAmbientSH[0]
        + A1 * 0.488603 * (n.y * uAmbientSH[1] + n.z * uAmbientSH[2] + n.x * uAmbientSH[3])
        + A2 * (1.092548 * (n.x * n.y * uAmbientSH[4] + n.y * n.z * uAmbientSH[5] + n.x * n.z * uAmbientSH[7])
                + 0.315392 * (3.0 * n.z * n.z - 1.0) * uAmbientSH[6]
                + 0.546274 * (n.x * n.x - n.y * n.y) * uAmbientSH[8]);
    return max(e, 0.0) / 3.14159265;
}

float3 shadingNormal(DmtrecFragment f) {
    float3 n = normalize(f.normal);
    return dot(n, uCameraPos - f.worldPos) < 0.0 ? -n : n;  // two-sided, as dmtrec
}

// Textures are stored as images (row 0 = top, v = 1): Direct3D's texture origin is the top row,
// so v flips as in common.glsl. Colour textures are sRGB PNGs: bind them with an _SRGB format.
float4 tex(Texture2D t, SamplerState s, float2 uv) { return t.Sample(s, float2(uv.x, 1.0 - uv.y)); }
