#!/usr/bin/env node
'use strict';
// The CLI is TypeScript compiled to dist/; `npm install` builds it (the "prepare" script).
const path = require('node:path');
const fs = require('node:fs');

// ferry pins AWS SDK releases that support Node 20; the SDK's notice about future releases is noise here.
process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';

const entry = path.join(__dirname, '..', 'dist', 'client', 'cli.js');
if (!fs.existsSync(entry)) {
  process.stderr.write(`ferry: not built yet: run \`npm run build\` in ${path.dirname(__dirname)}\n`);
  process.exit(1);
}
require(entry).main(process.argv);
