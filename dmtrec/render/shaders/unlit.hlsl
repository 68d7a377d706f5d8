// dmtrec "unlit": L = kd (or the vertex colour). Needs common.hlsl.
Texture2D kd;  SamplerState kd_sampler;  // linear colour (sRGB texture)
uniform bool uUseVertexColor;

float3 shade(DmtrecFragment f) { return uUseVertexColor ? f.color : tex(kd, kd_sampler, f.uv).rgb; }
