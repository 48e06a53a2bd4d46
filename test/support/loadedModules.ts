/**
 * A preload (`node --require dist/test/support/loadedModules.js …`) that, as
 * the process exits, writes the path of every module it loaded as a JSON
 * array to the file named by FERRY_TEST_LOADED_MODULES. The CLI compiles to
 * CommonJS, and so loads everything through require: its cache is the list.
 */
import { writeFileSync } from 'node:fs';

const out = process.env.FERRY_TEST_LOADED_MODULES;
if (out) process.on('exit', () => writeFileSync(out, JSON.stringify(Object.keys(require.cache))));
