// dmtrec "lambert_vc": L = albedo vc (ambient SH(n) + direct c max(0, n.l)). Needs common.hlsl.
Texture2D albedo;  SamplerState albedo_sampler;  // linear colour (sRGB texture)
uniform float ambient;
uniform float direct;

float3 shade(DmtrecFragment f) {
    float3 n = shadingNormal(f);
    float nl = max(dot(n, uMainLightDir), 0.0);
    return tex(albedo, albedo_sampler, f.uv).rgb * f.color * (ambient * ambientSH(n) + direct * uMainLightColor * nl);
}
