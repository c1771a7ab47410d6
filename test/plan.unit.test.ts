import { describe, expect, it } from 'vitest';
import type { ModelResponse, TextBlock } from '../core/model';
import { extractPlan, SUBMIT_PLAN_TOOL, validatePlan, type PlanContext, type PlanTask } from '../core/plan';

const reply = (...content: ModelResponse['content']): Pick<ModelResponse, 'content'> => ({ content });
const text = (t: string): TextBlock => ({ type: 'text', text: t });

const ctx = (over: Partial<PlanContext> = {}): PlanContext => ({
  agents: ['coder', 'reviewer'],
  doneKeys: [],
  usedKeys: [],
  maxTasks: 10,
  routable: () => null,
  ...over,
});

/** Asserts a rejected plan and returns its errors. */
function errorsOf(result: ReturnType<typeof validatePlan>): string[] {
  if (result.ok) throw new Error(`expected the plan to be rejected, got ${JSON.stringify(result.plan)}`);
  return result.errors;
}

describe('extractPlan', () => {
  it('takes the input of the submit_plan tool call, with its tool_use id, ahead of any text', () => {
    const input = { tasks: [{ id: 'a', goal: 'write code' }] };
    const r = extractPlan(
      reply(
        text('Here is my plan: {"tasks": []}'),
        { type: 'tool_use', id: 'other', name: 'search', input: { q: 'x' } },
        { type: 'tool_use', id: 'tu_1', name: SUBMIT_PLAN_TOOL, input },
      ),
    );
    expect(r).toEqual({ raw: input, toolUseId: 'tu_1' });
  });

  it('parses a fenced JSON block in the text', () => {
    const r = extractPlan(reply(text('Sure.\n```json\n{"tasks": [{"id": "a", "goal": "g"}]}\n```\nDone.')));
    expect(r).toEqual({ raw: { tasks: [{ id: 'a', goal: 'g' }] }, toolUseId: null });
  });

  it('parses a fenced block without a language tag', () => {
    const r = extractPlan(reply(text('```\n{"tasks": []}\n```')));
    expect(r).toEqual({ raw: { tasks: [] }, toolUseId: null });
  });

  it('parses bare JSON surrounded by prose, across several text blocks', () => {
    const r = extractPlan(reply(text('My plan is {"tasks": [{"id": "a", '), text('"goal": "g"}]} and that is all.')));
    expect(r).toEqual({ raw: { tasks: [{ id: 'a', goal: 'g' }] }, toolUseId: null });
  });

  it('asks for the submit_plan tool when the reply holds no plan at all', () => {
    expect(extractPlan(reply(text('I think we should write some code.')))).toEqual({
      error: 'no plan found: answer by calling the submit_plan tool',
    });
    expect(extractPlan(reply())).toEqual({ error: 'no plan found: answer by calling the submit_plan tool' });
    // A tool call other than submit_plan is not a plan either.
    expect(extractPlan(reply({ type: 'tool_use', id: 'x', name: 'search', input: { tasks: [] } }))).toHaveProperty('error');
  });

  it('reports invalid JSON instead of guessing', () => {
    const expected = { error: 'the plan in your reply is not valid JSON; call the submit_plan tool instead' };
    expect(extractPlan(reply(text('Plan: {"tasks": [ {"id": "a",} ]}')))).toEqual(expected);
    expect(extractPlan(reply(text('```json\n{"tasks": [\n```')))).toEqual(expected);
  });
});

describe('validatePlan', () => {
  it('accepts a valid plan and fills in defaults', () => {
    const r = validatePlan(
      { summary: 's', tasks: [{ id: 'a', goal: 'code it', role: 'coder' }, { id: 'b', goal: 'review it', agent: 'reviewer', dependsOn: ['a'], input: { x: 1 } }] },
      ctx(),
    );
    expect(r).toEqual({
      ok: true,
      plan: {
        summary: 's',
        tasks: [
          { id: 'a', goal: 'code it', role: 'coder', dependsOn: [] },
          { id: 'b', goal: 'review it', agent: 'reviewer', dependsOn: ['a'], input: { x: 1 } },
        ],
      },
    });
  });

  it('rejects duplicate ids', () => {
    const errors = errorsOf(validatePlan({ tasks: [{ id: 'a', goal: 'x' }, { id: 'b', goal: 'y' }, { id: 'a', goal: 'z' }] }, ctx()));
    expect(errors).toEqual(['tasks.2.id: duplicate id "a"']);
  });

  it('rejects a dependency on a task that does not exist', () => {
    const errors = errorsOf(validatePlan({ tasks: [{ id: 'a', goal: 'x', dependsOn: ['ghost'] }] }, ctx()));
    expect(errors).toEqual(['tasks.0.dependsOn: unknown task "ghost"']);
  });

  it('rejects a task that depends on itself', () => {
    const errors = errorsOf(validatePlan({ tasks: [{ id: 'a', goal: 'x' }, { id: 'b', goal: 'y', dependsOn: ['b'] }] }, ctx()));
    expect(errors).toContain('tasks.1.dependsOn: task "b" depends on itself');
  });

  it('rejects a dependency cycle and shows the cycle', () => {
    const errors = errorsOf(
      validatePlan(
        {
          tasks: [
            { id: 'start', goal: 'x' },
            { id: 'a', goal: 'x', dependsOn: ['start', 'c'] },
            { id: 'b', goal: 'x', dependsOn: ['a'] },
            { id: 'c', goal: 'x', dependsOn: ['b'] },
          ],
        },
        ctx(),
      ),
    );
    expect(errors).toEqual(['tasks: dependency cycle a -> c -> b -> a']);
  });

  it('accepts a diamond (shared dependencies are not a cycle)', () => {
    const r = validatePlan(
      {
        tasks: [
          { id: 'a', goal: 'x' },
          { id: 'b', goal: 'x', dependsOn: ['a'] },
          { id: 'c', goal: 'x', dependsOn: ['a'] },
          { id: 'd', goal: 'x', dependsOn: ['b', 'c'] },
        ],
      },
      ctx(),
    );
    expect(r.ok).toBe(true);
  });

  it('rejects reusing a key used earlier in the round', () => {
    const errors = errorsOf(validatePlan({ tasks: [{ id: 'fix', goal: 'x' }] }, ctx({ usedKeys: ['fix', 'other'] })));
    expect(errors).toEqual(['tasks.0.id: "fix" was already used in this round; pick a new id']);
  });

  it('allows depending on a task of an earlier plan that is done, but not on one that is not', () => {
    const c = ctx({ doneKeys: ['a'], usedKeys: ['a', 'b'] });
    expect(validatePlan({ tasks: [{ id: 'c', goal: 'x', dependsOn: ['a'] }] }, c).ok).toBe(true);
    expect(errorsOf(validatePlan({ tasks: [{ id: 'c', goal: 'x', dependsOn: ['b'] }] }, c))).toEqual(['tasks.0.dependsOn: unknown task "b"']);
  });

  it('rejects an unknown explicit agent and names the available agents', () => {
    let routed = 0;
    const errors = errorsOf(
      validatePlan(
        { tasks: [{ id: 'a', goal: 'x', agent: 'wizard' }] },
        ctx({
          routable: () => {
            routed++;
            return null;
          },
        }),
      ),
    );
    expect(errors).toEqual(['tasks.0.agent: unknown agent "wizard" (available: coder, reviewer)']);
    expect(routed).toBe(0);
  });

  it('reports the router message for a task no agent can take', () => {
    const seen: PlanTask[] = [];
    const errors = errorsOf(
      validatePlan(
        { tasks: [{ id: 'a', goal: 'fine', role: 'coder' }, { id: 'b', goal: 'paint', role: 'artist' }] },
        ctx({
          routable: (t) => {
            seen.push(t);
            return t.role === 'artist' ? 'no agent has role "artist"' : null;
          },
        }),
      ),
    );
    expect(errors).toEqual(['tasks.1: no agent has role "artist"']);
    expect(seen.map((t) => t.id)).toEqual(['a', 'b']);
  });

  it('rejects more tasks than the limit', () => {
    const tasks = [1, 2, 3].map((i) => ({ id: `t${i}`, goal: 'x' }));
    expect(errorsOf(validatePlan({ tasks }, ctx({ maxTasks: 2 })))).toEqual(['tasks: at most 2 tasks per plan (got 3)']);
    expect(validatePlan({ tasks }, ctx({ maxTasks: 3 })).ok).toBe(true);
  });

  it('is strict: unknown fields in a task or in the plan are errors, not ignored', () => {
    expect(errorsOf(validatePlan({ tasks: [{ id: 'a', goal: 'x', priority: 1 }] }, ctx()))).toEqual(['tasks.0: Unrecognized key: "priority"']);
    expect(errorsOf(validatePlan({ tasks: [], notes: 'hi' }, ctx()))).toEqual(['(plan): Unrecognized key: "notes"']);
  });

  it('rejects malformed shapes with paths the planner can act on', () => {
    const errors = errorsOf(validatePlan({ tasks: [{ id: 'has space', goal: '   ' }] }, ctx()));
    expect(errors).toHaveLength(2);
    expect(errors[0]).toMatch(/^tasks\.0\.id: /);
    expect(errors[1]).toBe('tasks.0.goal: goal must not be empty');
    expect(errorsOf(validatePlan('not a plan', ctx()))[0]).toMatch(/^\(plan\): /);
  });

  it('reports every problem at once', () => {
    const errors = errorsOf(
      validatePlan(
        { tasks: [{ id: 'a', goal: 'x', dependsOn: ['zzz'] }, { id: 'a', goal: 'y', agent: 'nobody' }] },
        ctx({ usedKeys: ['a'] }),
      ),
    );
    expect(errors).toEqual(
      expect.arrayContaining([
        'tasks.1.id: duplicate id "a"',
        'tasks.0.id: "a" was already used in this round; pick a new id',
        'tasks.0.dependsOn: unknown task "zzz"',
        'tasks.1.agent: unknown agent "nobody" (available: coder, reviewer)',
      ]),
    );
  });
});
