// dmtrec "toon": N.L through a hard ramp, SH ambient, rim light. Needs common.hlsl.
// ramp(x) = b0 + sum_k (b_k - b_{k-1}) step(t_k, x);  L = albedo (a SH(n) + c ramp(n.l)) + rim step(r, 1 - n.v)
#define BANDS 3
Texture2D albedo;  SamplerState albedo_sampler;  // linear colour (sRGB texture)
uniform float thresholds[BANDS - 1];
uniform float levels[BANDS];
uniform float ambient;
uniform float3 rim;
uniform float rim_cut;

float3 shade(DmtrecFragment f) {
    float3 n = shadingNormal(f);
    float3 v = normalize(uCameraPos - f.worldPos);
    float x = dot(n, uMainLightDir);
    float ramp = levels[0];
    for (int k = 1; k < BANDS; k++) ramp += (levels[k] - levels[k - 1]) * (x > thresholds[k - 1] ? 1.0 : 0.0);
    float3 lit = tex(albedo, albedo_sampler, f.uv).rgb * (ambient * ambientSH(n) + uMainLightColor * ramp);
    return lit + rim * ((1.0 - dot(n, v)) > rim_cut ? 1.0 : 0.0);
}
