import { mkdtempSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { TroupeError } from '../core/errors';
import { createScriptedProvider, loadScenario } from '../activities/models/scripted';
import type { ChatMessage } from '../core/model';

const dir = mkdtempSync(path.join(os.tmpdir(), 'scenarios-'));
writeFileSync(
  path.join(dir, 'two.yaml'),
  'name: two\nturns:\n  - toolCalls: [{ name: blackboard_read, input: {} }]\n  - text: "you said {{input}}"\n',
);
writeFileSync(path.join(dir, 'broken.yaml'), 'name: broken\nturns:\n  - delayMs: -1\n');
const provider = createScriptedProvider({ scenarioDirs: [dir] });
const hooks = (deltas: string[] = []) => ({ onTextDelta: (t: string) => void deltas.push(t), signal: new AbortController().signal });
const req = (messages: ChatMessage[]) => ({ model: 'two', system: '', messages, tools: [], maxTokens: 100 });
const user = (text: string): ChatMessage => ({ role: 'user', content: [{ type: 'text', text }] });
const assistant: ChatMessage = { role: 'assistant', content: [{ type: 'text', text: '.' }] };

describe('the scripted provider', () => {
  it('plays the turn given by the number of assistant messages, so a retry plays the same turn', async () => {
    const a = await provider.complete(req([user('hi')]), hooks());
    const b = await provider.complete(req([user('hi')]), hooks());
    expect(a).toEqual(b);
    expect(a).toMatchObject({ stopReason: 'tool_use', content: [{ type: 'tool_use', name: 'blackboard_read', id: 'toolu_scripted_0_0' }] });
  });

  it('streams its text as deltas and fills in the last user text', async () => {
    const deltas: string[] = [];
    const r = await provider.complete(req([user('hello there'), assistant, user('the plan')]), hooks(deltas));
    expect(r.content).toEqual([{ type: 'text', text: 'you said the plan' }]);
    expect(deltas.join('')).toBe('you said the plan');
    expect(deltas.length).toBeGreaterThan(1);
  });

  it('fails loudly when it runs out of turns', async () => {
    const err = await provider.complete(req([user('a'), assistant, user('b'), assistant, user('c')]), hooks()).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(TroupeError);
    expect(err).toMatchObject({ code: 'scenario_exhausted', message: expect.stringContaining('has 2 turns and all were played') });
  });

  it('names the problem in an invalid or missing scenario', () => {
    expect(() => loadScenario('broken', [dir])).toThrow(/broken\.yaml is invalid: turns\.0/);
    expect(() => loadScenario('nope', [dir])).toThrow(/no scenario "nope"/);
    expect(() => loadScenario('../etc/passwd', [dir])).toThrow(/invalid scenario name/);
  });

  it('ships the offline scenario the default agent uses without an API key', () => {
    expect(loadScenario('offline-assistant', []).loop).toBe(true);
  });

  it('stops a delayed turn when the call is aborted', async () => {
    writeFileSync(path.join(dir, 'slow.yaml'), 'name: slow\nturns:\n  - { delayMs: 60000, text: late }\n');
    const abort = new AbortController();
    const p = provider.complete({ ...req([user('x')]), model: 'slow' }, { onTextDelta: () => undefined, signal: abort.signal });
    setTimeout(() => abort.abort(new Error('cancelled')), 20);
    await expect(p).rejects.toThrow('cancelled');
  });
});
