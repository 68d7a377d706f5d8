// dmtrec "matcap": L = albedo M((n_view.xy + 1) / 2). Needs common.hlsl.
Texture2D albedo;  SamplerState albedo_sampler;  // linear colour (sRGB texture)
Texture2D matcap;  SamplerState matcap_sampler;  // linear radiance / matcapScale (sRGB texture; bilinear, clamp)
uniform float matcapScale;                       // material.json's "scale" of the matcap

float3 shade(DmtrecFragment f) {
    float3 nv = mul(uWorldToView, shadingNormal(f));
    float2 uv = saturate(nv.xy * 0.5 + 0.5);
    return tex(albedo, albedo_sampler, f.uv).rgb * matcapScale * matcap.Sample(matcap_sampler, float2(uv.x, 1.0 - uv.y)).rgb;
}
