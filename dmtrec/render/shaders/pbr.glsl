// dmtrec "pbr": split-sum metallic-roughness shading (Karis 2013). Needs common.glsl.
// L = (E_d(n) kd (1 - m) + E_s(r, roughness) (F0 A + B)) (1 - occlusion), F0 = mix(0.04, kd, m).
// The prefiltered probe (diffuse irradiance / pi, GGX specular mips over roughness 0.08..0.5..1)
// and the DFG table come from dmtrec's EnvironmentLight (export them with the probe).
uniform sampler2D kd;               // linear base colour
uniform sampler2D ks;               // (occlusion, roughness, metallic)
uniform samplerCube uDiffuse;
uniform samplerCube uSpecular;      // mip levels by roughness, see uSpecularLevel
uniform sampler2D uDFG;             // (A, B) by (n.v, roughness)
uniform float uSpecularLevels;      // number of specular mips L

float specularLevel(float r) {     // EnvironmentLight.mip_level
    float last = uSpecularLevels - 1.0;
    if (r < 0.5) return (clamp(r, 0.08, 0.5) - 0.08) / 0.42 * max(last - 1.0, 1.0);
    return (clamp(r, 0.5, 1.0) - 0.5) / 0.5 + (last - 1.0);
}

vec3 shade() {
    vec3 n = shadingNormal();
    vec3 v = normalize(uCameraPos - vWorldPos);
    vec3 base = tex(kd, vUv).rgb;
    vec3 orm = tex(ks, vUv).rgb;
    float m = orm.b, r = orm.g;
    vec3 f0 = mix(vec3(0.04), base, m);
    vec2 ab = texture2D(uDFG, vec2(clamp(dot(n, v), 1e-4, 1.0), r)).rg;
    vec3 refl = reflect(-v, n);
    vec3 diffuse = textureCube(uDiffuse, n).rgb * base * (1.0 - m);
    vec3 spec = textureCubeLodEXT(uSpecular, refl, specularLevel(r)).rgb * (f0 * ab.x + ab.y);
    return (diffuse + spec) * (1.0 - orm.r);
}
