import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { TroupeError } from '../core/errors';
import { loadAgentFiles, parseAgentYaml } from '../lib/agent-files';
import { BUILTIN_AGENTS_DIR, validateAgent } from '../service/agents';

const dirs: string[] = [];
function tempDir(files: Record<string, string>): string {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'troupe-agents-'));
  dirs.push(dir);
  for (const [name, text] of Object.entries(files)) writeFileSync(path.join(dir, name), text);
  return dir;
}
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

const GOOD = `id: helper
name: Helper
role: coder
model: anthropic:claude-sonnet-5-5
instructions: Help.
tools: [blackboard_read]
permissions: [read]
memoryScope: session
`;

async function loadError(dir: string): Promise<TroupeError> {
  const err = await loadAgentFiles(dir).then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(TroupeError);
  return err as TroupeError;
}

describe('the shipped agents/*.yaml', () => {
  it('all parse and validate, one agent per file', async () => {
    const entries = await loadAgentFiles(BUILTIN_AGENTS_DIR);
    expect(entries.map((e) => e.definition.id).sort()).toEqual(['assistant', 'coder', 'planner', 'reviewer', 'tester']);
    for (const e of entries) {
      expect(e.file).toBe(`${e.definition.id}.yaml`);
      expect(e.source).toBe(`yaml:${e.definition.id}.yaml`);
      expect(validateAgent(e.definition)).toEqual(e.definition);
      expect(e.definition.model).toBe('default');
      expect(e.definition.instructions.length).toBeGreaterThan(100);
    }
  });

  it('ship the default set as specified', async () => {
    const byId = Object.fromEntries((await loadAgentFiles(BUILTIN_AGENTS_DIR)).map((e) => [e.definition.id, e.definition]));
    expect(byId.assistant).toEqual({
      id: 'assistant',
      name: 'Assistant',
      role: 'assistant',
      model: 'default',
      instructions:
        "You are Troupe's general assistant. Answer the user's request directly. Use the blackboard tools to keep " +
        'facts that later steps of this session will need.',
      tools: ['blackboard_write', 'blackboard_read'],
      permissions: [],
      memoryScope: 'session',
    });
    expect(byId.planner).toMatchObject({ role: 'planner', tools: ['blackboard_read'], memoryScope: 'project' });
    expect(byId.planner?.instructions).toContain('submit_plan');
    for (const word of ['coder', 'reviewer', 'tester', 'dependsOn', 'parallel', 'remaining', 'synthesize']) {
      expect(byId.planner?.instructions).toContain(word);
    }
    expect(byId.coder).toMatchObject({
      role: 'coder',
      tools: ['blackboard_read', 'blackboard_write', 'handoff'],
      permissions: ['read', 'write', 'exec'],
      memoryScope: 'session',
      retry: { maxAttempts: 2, backoffSeconds: 1 },
      timeoutSeconds: 1800,
    });
    expect(byId.reviewer).toMatchObject({ role: 'reviewer', tools: ['blackboard_read', 'blackboard_write', 'handoff'], permissions: ['read'], memoryScope: 'session' });
    expect(byId.tester).toMatchObject({ role: 'tester', tools: ['blackboard_read', 'blackboard_write', 'handoff'], permissions: ['read', 'exec'], memoryScope: 'session' });
  });
});

describe('loadAgentFiles', () => {
  it('reads *.yaml and *.yml, lists of agents and several documents, and ignores other files', async () => {
    const second = GOOD.replace('id: helper', 'id: helper-two');
    const dir = tempDir({
      'a.yaml': GOOD,
      'b.yml': `- ${second.trim().split('\n').join('\n  ')}\n- ${GOOD.replace('id: helper', 'id: helper-three').trim().split('\n').join('\n  ')}\n`,
      'c.yaml': `${GOOD.replace('id: helper', 'id: doc-one')}---\n${GOOD.replace('id: helper', 'id: doc-two')}`,
      'notes.txt': 'not an agent',
    });
    const entries = await loadAgentFiles(dir);
    expect(entries.map((e) => [e.definition.id, e.source])).toEqual([
      ['helper', 'yaml:a.yaml'],
      ['helper-two', 'yaml:b.yml'],
      ['helper-three', 'yaml:b.yml'],
      ['doc-one', 'yaml:c.yaml'],
      ['doc-two', 'yaml:c.yaml'],
    ]);
    // One file works as well as a folder.
    expect((await loadAgentFiles(path.join(dir, 'a.yaml'))).map((e) => e.source)).toEqual(['yaml:a.yaml']);
  });

  it("names the bad file and the bad field, and loads nothing", async () => {
    const dir = tempDir({ 'good.yaml': GOOD, 'bad.yaml': GOOD.replace('tools: [blackboard_read]', 'tools: [blackboard_read, shell]') });
    const err = await loadError(dir);
    expect(err.code).toBe('bad_request');
    expect(err.message).toContain('bad.yaml: tools.1: unknown tool "shell"');
    expect(err.message).not.toContain('good.yaml');
    expect(err.details).toEqual([{ path: 'bad.yaml: tools.1', message: expect.stringContaining('unknown tool "shell"') }]);
  });

  it('names the item of a list, unknown fields, bad YAML, empty files and ids defined twice', async () => {
    const list = `- ${GOOD.trim().split('\n').join('\n  ')}\n- ${GOOD.replace('id: helper', 'id: other').replace('memoryScope: session', 'memoryScope: sometimes').trim().split('\n').join('\n  ')}\n`;
    expect((await loadError(tempDir({ 'list.yaml': list }))).message).toContain('list.yaml: 1.memoryScope');
    expect((await loadError(tempDir({ 'extra.yaml': `${GOOD}colour: blue\n` }))).message).toMatch(/extra\.yaml: \(agent\): Unrecognized key.*colour/);
    expect((await loadError(tempDir({ 'broken.yaml': 'id: [unclosed\n' }))).message).toContain('broken.yaml: not valid YAML');
    expect((await loadError(tempDir({ 'empty.yaml': '# nothing\n' }))).message).toContain('empty.yaml: no agent definition');
    const twice = await loadError(tempDir({ 'one.yaml': GOOD, 'two.yaml': GOOD }));
    expect(twice.message).toContain('two.yaml: id: agent "helper" is also defined in one.yaml');
    expect((await loadError('/nonexistent/troupe-agents')).message).toContain('/nonexistent/troupe-agents');
  });
});

describe('validateAgent', () => {
  const base = { id: 'v', name: 'V', role: 'coder', model: 'default', instructions: 'x', tools: ['blackboard_read'], permissions: ['read'], memoryScope: 'session' };
  const problems = (input: unknown) => {
    try {
      validateAgent(input);
    } catch (err) {
      expect(err).toBeInstanceOf(TroupeError);
      return { message: (err as TroupeError).message, details: (err as TroupeError).details as { path: string; message: string }[] };
    }
    throw new Error('expected a validation error');
  };

  it('accepts a good definition and fills in defaults', () => {
    expect(validateAgent({ ...base, retry: { maxAttempts: 3 } }).retry).toEqual({ maxAttempts: 3, backoffSeconds: 1 });
    expect(validateAgent({ ...base, model: 'scripted:some-scenario' }).model).toBe('scripted:some-scenario');
  });

  it('rejects unknown tools, duplicate tools, unknown providers, bad permissions and useless blackboard tools', () => {
    expect(problems({ ...base, tools: ['blackboard_read', 'rm_rf'] }).details).toEqual([{ path: 'tools.1', message: expect.stringContaining('unknown tool "rm_rf"') }]);
    expect(problems({ ...base, tools: ['handoff', 'handoff'] }).details).toEqual([{ path: 'tools.1', message: 'duplicate tool "handoff"' }]);
    expect(problems({ ...base, model: 'openai:gpt' }).message).toContain('model: unknown model provider "openai"');
    expect(problems({ ...base, model: 'claude' }).details[0]?.path).toBe('model');
    expect(problems({ ...base, permissions: ['read', 'sudo'] }).message).toContain('permissions.1: unknown permission');
    const none = problems({ ...base, memoryScope: 'none', tools: ['handoff', 'blackboard_write'] });
    expect(none.details).toEqual([{ path: 'tools.1', message: expect.stringContaining('memoryScope is "none"') }]);
    expect(validateAgent({ ...base, memoryScope: 'none', tools: ['handoff'] }).memoryScope).toBe('none');
  });

  it('parses a YAML text holding one agent or a list', () => {
    expect(parseAgentYaml(GOOD, 'body').map((i) => i.prefix)).toEqual(['']);
    expect(parseAgentYaml(`- ${JSON.stringify(base)}\n- ${JSON.stringify(base)}\n`, 'body').map((i) => i.prefix)).toEqual(['0.', '1.']);
    expect(parseAgentYaml('', 'body')).toEqual([]);
  });
});
