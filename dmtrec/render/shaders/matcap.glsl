// dmtrec "matcap": L = albedo M((n_view.xy + 1) / 2). Needs common.glsl.
uniform sampler2D albedo;   // linear colour
uniform sampler2D matcap;   // linear radiance (dmtrec writes it scaled: see material.json "scale")
uniform float matcapScale;

vec3 shade() {
    vec3 nv = uWorldToView * shadingNormal();
    vec2 uv = clamp(nv.xy * 0.5 + 0.5, vec2(0.0), vec2(1.0));
    return tex(albedo, vUv).rgb * matcapScale * texture2D(matcap, vec2(uv.x, 1.0 - uv.y)).rgb;
}
