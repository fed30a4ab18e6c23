// Parses every workflow diagram under ui-tests/diagrams/ with the real Mermaid parser
// (mermaid's `parse`, with jsdom supplying the DOM it needs). Exits non-zero on the
// first invalid diagram. Run by .ci/run:
//   NODE_PATH=<dir with mermaid and jsdom installed> node ui-tests/mermaid/check.mjs
import { readdirSync, readFileSync } from "node:fs";
import { join, dirname } from "node:path";
import { fileURLToPath } from "node:url";
import { createRequire } from "node:module";

const modules = process.env.MERMAID_MODULES;
if (!modules) {
  console.error("set MERMAID_MODULES to a node_modules folder holding mermaid and jsdom");
  process.exit(2);
}
const require = createRequire(join(modules, "noop.js"));
const { JSDOM } = require("jsdom");
const dom = new JSDOM("<!DOCTYPE html><body></body>", { pretendToBeVisual: true });
globalThis.window = dom.window;
globalThis.document = dom.window.document;
for (const key of ["Element", "HTMLElement", "SVGElement", "Node", "DOMParser", "MutationObserver"]) {
  if (!(key in globalThis)) globalThis[key] = dom.window[key];
}
const mermaid = (await import(join(modules, "mermaid", "dist", "mermaid.core.mjs"))).default;
mermaid.initialize({ startOnLoad: false });

const dir = join(dirname(fileURLToPath(import.meta.url)), "..", "diagrams");
const files = readdirSync(dir).filter((f) => f.endsWith(".mmd")).sort();
if (files.length === 0) {
  console.error(`no diagrams in ${dir}`);
  process.exit(1);
}
let failed = 0;
for (const f of files) {
  const text = readFileSync(join(dir, f), "utf8");
  try {
    const r = await mermaid.parse(text);
    if (!r || r.diagramType !== "stateDiagram") throw new Error(`parsed as ${r && r.diagramType}`);
  } catch (e) {
    failed += 1;
    console.error(`${f}: ${e.message ?? e}`);
  }
}
console.log(`mermaid: ${files.length - failed} passed, ${failed} failed`);
process.exit(failed === 0 ? 0 : 1);
