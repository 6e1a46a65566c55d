// Lint: typescript-eslint's recommended rules, and the house's layers. A folder may import only
// from its own layer or lower ones (docs/architecture.md draws them), and no file may take part in
// an import cycle. Formatting is Prettier's (.prettierrc), checked by `npm run lint` too.
import js from '@eslint/js';
import tseslint from 'typescript-eslint';
import importX from 'eslint-plugin-import-x';
import { createTypeScriptImportResolver } from 'eslint-import-resolver-typescript';

/** Lowest first. Within a layer, folders may import each other (no cycles, though). */
const LAYERS = [
  ['src/errors', 'src/math', 'src/redis'],
  ['src/util'],
  ['src/sources'],
  ['src/index', 'src/model', 'src/keylog', 'src/shards'],
  ['src/cache', 'src/preprocess'],
  ['src/engine'],
  ['src/jobs'],
  ['src/advisor', 'src/robustness'],
  ['src/reports', 'src/queue'],
  ['src/http', 'src/worker-process.ts'],
  ['src/server.ts', 'workers'],
  ['src/cli'],
  ['bench'],
];

const zones = LAYERS.slice(0, -1).flatMap((layer, i) =>
  layer.map((target) => ({
    target: `./${target}`,
    from: LAYERS.slice(i + 1)
      .flat()
      .map((f) => `./${f}`),
    message: 'imports run down the layers (eslint.config.js LAYERS): move the shared part lower instead',
  })),
);

export default tseslint.config(
  { ignores: ['dist/', 'node_modules/', 'public/', 'indexes/', 'coverage/'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    files: ['**/*.ts'],
    plugins: { 'import-x': importX },
    settings: { 'import-x/resolver-next': [createTypeScriptImportResolver({ project: './tsconfig.json' })] },
    rules: {
      'import-x/no-restricted-paths': ['error', { zones }],
      'import-x/no-cycle': ['error', { ignoreExternal: true }],
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_', caughtErrors: 'none' }],
      '@typescript-eslint/no-explicit-any': 'error',
      'no-constant-condition': ['error', { checkLoops: false }],
    },
  },
  // tests read untyped JSON bodies
  { files: ['test/**/*.ts'], rules: { '@typescript-eslint/no-explicit-any': 'off' } },
);
