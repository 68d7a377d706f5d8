// dmtrec "lambert_vc": L = albedo vc (ambient SH(n) + direct c max(0, n.l)). Needs common.glsl.
uniform sampler2D albedo;   // linear colour
uniform float ambient;
uniform float direct;

vec3 shade() {
    vec3 n = shadingNormal();
    float nl = max(dot(n, uMainLightDir), 0.0);
    return tex(albedo, vUv).rgb * vColor * (ambient * ambientSH(n) + direct * uMainLightColor * nl);
}
