#!/usr/bin/env node
'use strict';
// The CLI is TypeScript compiled to dist/; `npm install` builds it (the "prepare" script).
const path = require('node:path');
const fs = require('node:fs');

const entry = path.join(__dirname, '..', 'dist', 'client', 'cli.js');
if (!fs.existsSync(entry)) {
  process.stderr.write(`ferry: not built yet: run \`npm run build\` in ${path.dirname(__dirname)}\n`);
  process.exit(1);
}
require(entry).main(process.argv);
