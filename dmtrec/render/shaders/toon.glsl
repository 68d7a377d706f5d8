// dmtrec "toon": N.L through a hard ramp, SH ambient, rim light. Needs common.glsl.
// ramp(x) = b0 + sum_k (b_k - b_{k-1}) step(t_k, x);  L = albedo (a SH(n) + c ramp(n.l)) + rim step(r, 1 - n.v)
#define BANDS 3
uniform sampler2D albedo;         // linear colour
uniform float thresholds[BANDS - 1];
uniform float levels[BANDS];
uniform float ambient;
uniform vec3 rim;
uniform float rim_cut;

vec3 shade() {
    vec3 n = shadingNormal();
    vec3 v = normalize(uCameraPos - vWorldPos);
    float x = dot(n, uMainLightDir);
    float ramp = levels[0];
    for (int k = 1; k < BANDS; k++) ramp += (levels[k] - levels[k - 1]) * (x > thresholds[k - 1] ? 1.0 : 0.0);
    vec3 lit = tex(albedo, vUv).rgb * (ambient * ambientSH(n) + uMainLightColor * ramp);
    return lit + rim * ((1.0 - dot(n, v)) > rim_cut ? 1.0 : 0.0);
}
