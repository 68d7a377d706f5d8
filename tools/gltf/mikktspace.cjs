// Reference MikkTSpace tangents (the mikktspace package's WebAssembly build of the reference
// algorithm) for unindexed triangles: reads {"position": [...], "normal": [...], "uv": [...]}
// (flat float lists, 3 corners per triangle) as JSON on stdin, prints the [x, y, z, w] list.
const { generateTangents } = require("mikktspace");
let text = "";
process.stdin.on("data", (chunk) => (text += chunk));
process.stdin.on("end", () => {
  const input = JSON.parse(text);
  const out = generateTangents(
    new Float32Array(input.position),
    new Float32Array(input.normal),
    new Float32Array(input.uv),
  );
  process.stdout.write(JSON.stringify(Array.from(out)));
});
