// dmtrec "simple_lit" (Unity URP SimpleLit, Blinn-Phong + SH ambient). Needs common.glsl.
// L = albedo (SH(n) + c max(0, n.l)) + specular c max(0, n.h)^(2^(10 g + 1))
uniform sampler2D albedo;     // linear colour
uniform sampler2D specular;   // linear colour
uniform sampler2D smoothness; // r channel

vec3 shade() {
    vec3 n = shadingNormal();
    vec3 v = normalize(uCameraPos - vWorldPos);
    vec3 h = normalize(uMainLightDir + v);
    float nl = max(dot(n, uMainLightDir), 0.0);
    float nh = clamp(dot(n, h), 1e-6, 1.0);
    float shininess = exp2(10.0 * tex(smoothness, vUv).r + 1.0);
    vec3 a = tex(albedo, vUv).rgb;
    return a * (ambientSH(n) + uMainLightColor * nl) + tex(specular, vUv).rgb * uMainLightColor * pow(nh, shininess);
}
