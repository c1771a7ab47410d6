// ESLint flat config. Two jobs: catch promise mistakes everywhere (type-aware), and guard the workflow sandbox, so
// workflow code stays deterministic (architecture invariant 1: `@temporalio/workflow`, `core/` and `import type` from
// activities only).
import { builtinModules } from 'node:module';
import { defineConfig } from 'eslint/config';
import { createNodeResolver, importX } from 'eslint-plugin-import-x';
import tseslint from 'typescript-eslint';

const SANDBOX = 'workflow code runs in the deterministic Temporal sandbox';
const NOT_IN_WORKFLOWS = `is not allowed in workflows/: ${SANDBOX}`;
const VIA_ACTIVITY = 'do I/O in an activity and call it through proxyActivities';

/** Node builtins, both spellings: `fs`, `fs/promises` and `node:fs`. */
const nodeBuiltins = builtinModules.filter((name) => !name.startsWith('_'));

export default defineConfig(
  {
    ignores: ['node_modules/**', 'generated/**', '**/generated/**', '.tools/**', '.data/**', 'coverage/**', 'dist/**'],
  },

  {
    files: ['**/*.ts'],
    extends: [tseslint.configs.recommended],
    plugins: { 'import-x': importX },
    languageOptions: {
      parserOptions: {
        projectService: {
          // Files outside tsconfig's `include` get a default project. Listing a file that tsconfig does include is an
          // error, so name them one by one. The lint fixtures are never on disk: test/lint-workflows.test.ts lints
          // it from memory to prove the sandbox guard below works.
          allowDefaultProject: ['prisma.config.ts', 'workflows/__lint_fixture__.ts', 'core/__lint_fixture__.ts'],
        },
        tsconfigRootDir: import.meta.dirname,
      },
    },
    settings: {
      'import-x/extensions': ['.ts', '.tsx', '.mts', '.cts', '.js', '.mjs', '.cjs'],
      'import-x/parsers': { '@typescript-eslint/parser': ['.ts', '.tsx', '.mts', '.cts'] },
      // Extensionless relative imports (moduleResolution Bundler) resolve like Node with .ts added.
      'import-x/resolver-next': [createNodeResolver({ extensions: ['.ts', '.tsx', '.mts', '.js', '.mjs', '.json'] })],
    },
    rules: {
      '@typescript-eslint/no-floating-promises': 'error',
      '@typescript-eslint/no-misused-promises': 'error',
      '@typescript-eslint/await-thenable': 'error',
      '@typescript-eslint/consistent-type-imports': [
        'error',
        { prefer: 'type-imports', fixStyle: 'inline-type-imports', disallowTypeAnnotations: false },
      ],
      '@typescript-eslint/no-unused-vars': [
        'error',
        { argsIgnorePattern: '^_', varsIgnorePattern: '^_', caughtErrorsIgnorePattern: '^_', ignoreRestSiblings: true },
      ],
      // `any` at a boundary (a parsed JSON blob, a test double) is sometimes the honest type; keep it visible, not fatal.
      '@typescript-eslint/no-explicit-any': 'warn',
      'import-x/no-cycle': ['error', { ignoreExternal: true }],
    },
  },

  {
    // core/ is imported by workflows, so it obeys the same sandbox: pure logic and zod, nothing that does I/O.
    files: ['core/**/*.ts'],
    rules: {
      '@typescript-eslint/no-restricted-imports': [
        'error',
        {
          paths: nodeBuiltins.map((name) => ({ name, message: `Node builtin '${name}' is not allowed in core/: it is imported by workflow code.` })),
          patterns: [
            {
              group: ['node:*', '@prisma/*', 'prisma', 'pg', 'pg/*', 'express', 'pino', '@anthropic-ai/*', '@temporalio/*', '**/generated/**'],
              message: 'core/ holds pure logic imported by workflow code: no I/O libraries, no Temporal SDK.',
            },
            {
              group: ['**/lib', '**/lib/**', '**/service/**', '**/api/**', '**/worker/**', '**/activities/**', '**/workflows/**'],
              message: 'core/ imports nothing from the rest of the project; everything else imports core/.',
            },
          ],
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
          paths: [
            ...nodeBuiltins.map((name) => ({ name, message: `Node builtin '${name}' ${NOT_IN_WORKFLOWS}; ${VIA_ACTIVITY}.` })),
            { name: 'prisma', message: `Prisma ${NOT_IN_WORKFLOWS}; registry writes are activities.` },
            { name: 'pg', message: `pg ${NOT_IN_WORKFLOWS}; ${VIA_ACTIVITY}.` },
            { name: 'express', message: `express ${NOT_IN_WORKFLOWS}.` },
            { name: '@anthropic-ai/sdk', message: `The model SDK ${NOT_IN_WORKFLOWS}; model calls are activities.` },
            { name: 'pino', message: `pino ${NOT_IN_WORKFLOWS}; use \`log\` from @temporalio/workflow.` },
            { name: '@temporalio/client', message: `@temporalio/client ${NOT_IN_WORKFLOWS}; use @temporalio/workflow.` },
            { name: '@temporalio/worker', message: `@temporalio/worker ${NOT_IN_WORKFLOWS}; use @temporalio/workflow.` },
            { name: '@temporalio/activity', message: `@temporalio/activity ${NOT_IN_WORKFLOWS}; use @temporalio/workflow.` },
            { name: '@temporalio/testing', message: `@temporalio/testing ${NOT_IN_WORKFLOWS}.` },
          ],
          patterns: [
            { group: ['node:*'], message: `Node builtins are not allowed in workflows/: ${SANDBOX}; ${VIA_ACTIVITY}.` },
            { group: ['@prisma/*'], message: `Prisma ${NOT_IN_WORKFLOWS}; registry writes are activities.` },
            {
              group: ['**/generated', '**/generated/**'],
              message: `The generated Prisma client ${NOT_IN_WORKFLOWS}; registry writes are activities.`,
            },
            { group: ['pg/*', 'pino/*', 'express/*', '@anthropic-ai/sdk/*'], message: `This package ${NOT_IN_WORKFLOWS}.` },
            {
              group: ['**/activities', '**/activities/**'],
              allowTypeImports: true,
              message:
                "Only `import type` from activities/ is allowed in workflows/; call activities through proxyActivities<ReturnType<typeof createActivities>>().",
            },
            {
              group: [
                '**/lib',
                '**/lib/**',
                '**/service',
                '**/service/**',
                '**/api',
                '**/api/**',
                '**/worker',
                '**/worker/**',
                '**/gateway',
                '**/gateway/**',
                '**/cli',
                '**/cli/**',
                '**/scripts/**',
              ],
              allowTypeImports: true,
              message: `Only @temporalio/workflow, core/ and \`import type\` from activities/ belong in workflows/ (architecture invariant 1).`,
            },
          ],
        },
      ],
    },
  },
);
