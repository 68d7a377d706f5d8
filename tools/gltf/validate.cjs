// Khronos glTF Validator on one .glb/.gltf file: prints the JSON report on stdout.
// Usage: node validate.cjs FILE
const fs = require("fs");
const validator = require("gltf-validator");
const file = process.argv[2];
validator
  .validateBytes(new Uint8Array(fs.readFileSync(file)), { uri: file, maxIssues: 100 })
  .then((report) => process.stdout.write(JSON.stringify(report)))
  .catch((error) => {
    console.error(String(error));
    process.exit(1);
  });
