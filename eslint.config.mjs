// The lint ferry's code passes with zero warnings (`npm run lint`, run by `npm test`).
// Beyond the recommended rules it holds the architecture's lines: the layers
// import one way (core ← workflows/activities/runtime/temporal ← worker/client),
// core and workflows stay free of Node and network modules, library code
// logs through loggers rather than the console, and no promise floats.
import js from '@eslint/js';
import tseslint from 'typescript-eslint';

/** Node's own modules, by both spellings. */
const NODE_MODULES = ['node:*', 'fs', 'fs/*', 'path', 'os', 'http', 'https', 'net', 'tls', 'child_process', 'crypto', 'stream', 'stream/*', 'zlib', 'worker_threads', 'dgram', 'dns', 'util', 'url', 'events', 'timers', 'timers/*'];

/** `no-restricted-imports` patterns forbidding every import of these layers (relative paths from one folder down). */
const layers = (...names) => names.map((name) => ({ group: [`../${name}`, `../${name}/*`, `../../${name}`, `../../${name}/*`], message: `this layer does not import ${name}/ (core ← workflows/activities/runtime/temporal ← worker/client)` }));

export default tseslint.config(
  { ignores: ['dist/**', 'node_modules/**', '.tools/**', '.ferry/**', 'test-output/**', 'bench/.data/**', 'test/fixtures/**', 'bin/**', 'examples/**'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    files: ['**/*.ts'],
    languageOptions: {
      parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname },
    },
    rules: {
      // node:test's describe/it return promises the runner itself awaits.
      '@typescript-eslint/no-floating-promises': ['error', { allowForKnownSafeCalls: [{ from: 'package', package: 'node:test', name: ['describe', 'it', 'test', 'suite', 'before', 'after'] }] }],
      '@typescript-eslint/no-misused-promises': ['error', { checksVoidReturn: { arguments: false, attributes: false } }],
      '@typescript-eslint/await-thenable': 'error',
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_', ignoreRestSiblings: true }],
      '@typescript-eslint/consistent-type-imports': ['error', { prefer: 'type-imports', fixStyle: 'inline-type-imports' }],
      eqeqeq: ['error', 'always'],
      'no-console': 'error',
      'prefer-const': 'error',
    },
  },
  {
    files: ['core/**/*.ts'],
    rules: {
      '@typescript-eslint/no-restricted-imports': [
        'error',
        {
          paths: NODE_MODULES.filter((name) => !name.includes('*')).map((name) => ({ name, message: 'core/ is pure: no Node modules' })),
          patterns: [{ group: ['node:*', '@aws-sdk/*', '@temporalio/*'], message: 'core/ is pure: no Node, AWS or Temporal modules' }, ...layers('workflows', 'activities', 'runtime', 'temporal', 'worker', 'client')],
        },
      ],
    },
  },
  {
    files: ['workflows/**/*.ts'],
    rules: {
      '@typescript-eslint/no-restricted-imports': [
        'error',
        {
          paths: NODE_MODULES.filter((name) => !name.includes('*')).map((name) => ({ name, message: 'workflows run in the deterministic sandbox: no Node modules' })),
          patterns: [
            { group: ['node:*', '@aws-sdk/*', '@temporalio/client', '@temporalio/worker', '@temporalio/activity'], message: 'workflows import only @temporalio/workflow, core/ and activity types' },
            { group: ['../activities', '../activities/*'], allowTypeImports: true, message: 'workflows import activity types only' },
            ...layers('runtime', 'temporal', 'worker', 'client'),
          ],
        },
      ],
    },
  },
  {
    files: ['activities/**/*.ts', 'runtime/**/*.ts', 'temporal/**/*.ts'],
    rules: {
      '@typescript-eslint/no-restricted-imports': ['error', { patterns: layers('workflows', 'worker', 'client') }],
    },
  },
  {
    files: ['runtime/**/*.ts'],
    rules: {
      // The agent runs on the target without the worker's code: it shares only core/.
      '@typescript-eslint/no-restricted-imports': ['error', { patterns: layers('workflows', 'activities', 'temporal', 'worker', 'client') }],
    },
  },
  {
    files: ['worker/**/*.ts'],
    rules: {
      '@typescript-eslint/no-restricted-imports': ['error', { patterns: layers('client') }],
    },
  },
  {
    files: ['client/**/*.ts'],
    rules: {
      '@typescript-eslint/no-restricted-imports': [
        'error',
        {
          patterns: [
            ...layers('worker'),
            {
              // The CLI talks to workflows and to this small, named set of helpers, not to activity internals.
              group: ['../activities/*', '!../activities/targets', '!../activities/s3BlobStore', '!../activities/agentClient'],
              allowTypeImports: true,
              message: 'the CLI uses activities/targets (the registry), activities/s3BlobStore and activities/agentClient only',
            },
          ],
        },
      ],
    },
  },
  {
    // Tests, benchmarks and the worker's entry points may print; tests may leave a promise to a test runner's handling.
    files: ['test/**/*.ts', 'bench/**/*.ts'],
    rules: {
      'no-console': 'off',
    },
  },
);
