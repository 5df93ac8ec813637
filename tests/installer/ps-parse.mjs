// Parses PowerShell scripts with the tree-sitter PowerShell grammar (WebAssembly,
// no PowerShell needed) and reports every syntax error node. Exit 1 if any.
// Usage: node ps-parse.mjs NODE_MODULES_DIR FILE...
import { createRequire } from 'module';
import fs from 'fs';
import path from 'path';

const [modules, ...files] = process.argv.slice(2);
const require = createRequire(path.join(path.resolve(modules), 'noop.js'));
const { Parser, Language } = require('web-tree-sitter');
await Parser.init();
const language = await Language.load(
  path.join(modules, 'tree-sitter-powershell', 'tree-sitter-powershell.wasm'));
const parser = new Parser();
parser.setLanguage(language);

let errors = 0;
for (const file of files) {
  const tree = parser.parse(fs.readFileSync(file, 'utf8'));
  const bad = [];
  const walk = (node) => {
    if (node.type === 'ERROR' || node.isMissing) bad.push(node);
    for (const child of node.children) walk(child);
  };
  walk(tree.rootNode);
  console.log(`${path.basename(file)}: ${bad.length} syntax error(s)`);
  for (const node of bad.slice(0, 10)) {
    const what = node.isMissing ? `missing ${node.type}` : 'unexpected';
    console.log(`  line ${node.startPosition.row + 1}: ${what}: ${node.text.slice(0, 80).replace(/\n/g, ' ')}`);
  }
  errors += bad.length;
}
process.exit(errors ? 1 : 0);
