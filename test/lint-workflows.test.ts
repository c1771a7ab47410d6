import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { ESLint, type Linter } from 'eslint';
import { describe, expect, it } from 'vitest';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
// The file need not exist: lintText lints the given text as if it lived at this path, under the repo's own config.
const fixturePath = 'workflows/__lint_fixture__.ts';
const RULE = '@typescript-eslint/no-restricted-imports';

async function lintWorkflowSource(code: string, filePath = fixturePath): Promise<Linter.LintMessage[]> {
  const eslint = new ESLint({ cwd: root });
  const [result] = await eslint.lintText(code, { filePath: path.join(root, filePath) });
  if (result === undefined) throw new Error('ESLint returned no result for the fixture');
  const fatal = result.messages.filter((m) => m.fatal === true);
  expect(fatal, 'the fixture must parse under the repo config').toEqual([]);
  return result.messages;
}

describe('the workflow sandbox lint guard', () => {
  it('rejects Node builtins and Prisma imported into workflows/', async () => {
    const messages = await lintWorkflowSource(
      [
        "import { readFileSync } from 'node:fs';",
        "import { PrismaClient } from '@prisma/client';",
        'export const leak = [readFileSync, PrismaClient];',
        '',
      ].join('\n'),
    );
    const restricted = messages.filter((m) => m.ruleId === RULE);
    expect(restricted.map((m) => m.line).sort()).toEqual([1, 2]);
    expect(restricted.find((m) => m.line === 1)?.message).toContain("'node:fs'");
    expect(restricted.find((m) => m.line === 2)?.message).toContain("'@prisma/client'");
    expect(restricted.every((m) => m.severity === 2)).toBe(true);
  });

  it('allows @temporalio/workflow and a type-only import from activities/', async () => {
    const messages = await lintWorkflowSource(
      [
        "import type { X } from '../activities';",
        "import { proxyActivities } from '@temporalio/workflow';",
        'export const acts = proxyActivities<X>({ startToCloseTimeout: "1 minute" });',
        '',
      ].join('\n'),
    );
    expect(messages.filter((m) => m.ruleId === RULE)).toEqual([]);
  });

  it('still rejects a value import from activities/', async () => {
    const messages = await lintWorkflowSource(
      ["import { createActivities } from '../activities';", 'export const f = createActivities;', ''].join('\n'),
    );
    expect(messages.filter((m) => m.ruleId === RULE).map((m) => m.line)).toEqual([1]);
  });

  it('guards core/ too, since workflows import it', async () => {
    const messages = await lintWorkflowSource(
      ["import { randomUUID } from 'node:crypto';", "import { createLogger } from '../lib/logger';", 'export const f = [randomUUID, createLogger];', ''].join('\n'),
      'core/__lint_fixture__.ts',
    );
    expect(messages.filter((m) => m.ruleId === RULE).map((m) => m.line)).toEqual([1, 2]);
  });
});
