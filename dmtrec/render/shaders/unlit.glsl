// dmtrec "unlit": L = kd (or the vertex colour). Needs common.glsl.
uniform sampler2D kd;        // linear colour (decode sRGB PNGs to linear)
uniform bool uUseVertexColor;

vec3 shade() { return uUseVertexColor ? vColor : tex(kd, vUv).rgb; }
