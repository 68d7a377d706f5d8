// dmtrec "simple_lit" (Unity URP SimpleLit, Blinn-Phong + SH ambient). Needs common.hlsl.
// L = albedo (SH(n) + c max(0, n.l)) + specular c max(0, n.h)^(2^(10 g + 1))
Texture2D albedo;      SamplerState albedo_sampler;      // linear colour (sRGB texture)
Texture2D specular;    SamplerState specular_sampler;    // linear colour (sRGB texture)
Texture2D smoothness;  SamplerState smoothness_sampler;  // r channel

float3 shade(DmtrecFragment f) {
    float3 n = shadingNormal(f);
    float3 v = normalize(uCameraPos - f.worldPos);
    float3 h = normalize(uMainLightDir + v);
    float nl = max(dot(n, uMainLightDir), 0.0);
    float nh = clamp(dot(n, h), 1e-6, 1.0);
    float shininess = exp2(10.0 * tex(smoothness, smoothness_sampler, f.uv).r + 1.0);
    float3 a = tex(albedo, albedo_sampler, f.uv).rgb;
    return a * (ambientSH(n) + uMainLightColor * nl)
        + tex(specular, specular_sampler, f.uv).rgb * uMainLightColor * pow(nh, shininess);
}
