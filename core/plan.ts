/**
 * Plans: what a planner agent returns, and the checks that make model output safe to act on. Pure (used by the
 * session workflow). A plan is a list of tasks with local ids and dependencies; the orchestrator validates it and
 * sends the errors back to the planner when it is wrong.
 */
import { z } from 'zod';
import type { ModelResponse } from './model';

export const SUBMIT_PLAN_TOOL = 'submit_plan';

export const PlanTask = z
  .object({
    id: z.string().regex(/^[A-Za-z0-9_-]{1,40}$/, 'a short id of letters, digits, "_" or "-" (at most 40)'),
    goal: z.string().trim().min(1, 'goal must not be empty').max(20_000),
    role: z.string().min(1).max(63).optional(),
    agent: z.string().min(1).max(63).optional(),
    dependsOn: z.array(z.string()).max(50).default([]),
    input: z.unknown().optional(),
  })
  .strict();
export type PlanTask = z.infer<typeof PlanTask>;

export const Plan = z
  .object({
    tasks: z.array(PlanTask).max(50),
    summary: z.string().max(5_000).optional(),
  })
  .strict();
export type Plan = z.infer<typeof Plan>;

export const SUBMIT_PLAN_DESCRIPTION =
  'Submit the plan: the tasks that achieve the goal. Each task has a short unique id, a goal, and either a role ' +
  '(e.g. coder, reviewer, tester) or an explicit agent id; dependsOn lists ids of tasks whose results it needs. ' +
  'Tasks without dependencies run in parallel.';

/** Finds the plan in a planner's response: the submit_plan tool input, else a JSON object in the text. */
export function extractPlan(response: Pick<ModelResponse, 'content'>): { raw: unknown; toolUseId: string | null } | { error: string } {
  for (const block of response.content) {
    if (block.type === 'tool_use' && block.name === SUBMIT_PLAN_TOOL) return { raw: block.input, toolUseId: block.id };
  }
  const text = response.content.map((b) => (b.type === 'text' ? b.text : '')).join('');
  const fenced = /```(?:json)?\s*([\s\S]*?)```/.exec(text)?.[1];
  const candidate = fenced ?? text.slice(text.indexOf('{'), text.lastIndexOf('}') + 1);
  if (candidate.trim().startsWith('{')) {
    try {
      return { raw: JSON.parse(candidate) as unknown, toolUseId: null };
    } catch {
      return { error: 'the plan in your reply is not valid JSON; call the submit_plan tool instead' };
    }
  }
  return { error: `no plan found: answer by calling the ${SUBMIT_PLAN_TOOL} tool` };
}

export type PlanContext = {
  /** Agent ids the plan may assign explicitly. */
  agents: readonly string[];
  /** Plan ids of tasks that already finished in this round (a replan may depend on them). */
  doneKeys: readonly string[];
  /** Keys already used in this round (a replan must not reuse them). */
  usedKeys: readonly string[];
  maxTasks: number;
  /** Returns an error message when no agent can take the task. */
  routable: (task: PlanTask) => string | null;
};

/** Validates a raw plan. Errors are phrased for the planner, which gets them back to fix its plan. */
export function validatePlan(raw: unknown, ctx: PlanContext): { ok: true; plan: Plan } | { ok: false; errors: string[] } {
  const parsed = Plan.safeParse(raw);
  if (!parsed.success) {
    return { ok: false, errors: parsed.error.issues.map((i) => `${i.path.join('.') || '(plan)'}: ${i.message}`) };
  }
  const plan = parsed.data;
  const errors: string[] = [];
  if (plan.tasks.length > ctx.maxTasks) errors.push(`tasks: at most ${ctx.maxTasks} tasks per plan (got ${plan.tasks.length})`);
  const ids = new Set<string>();
  plan.tasks.forEach((t, i) => {
    if (ids.has(t.id)) errors.push(`tasks.${i}.id: duplicate id "${t.id}"`);
    if (ctx.usedKeys.includes(t.id)) errors.push(`tasks.${i}.id: "${t.id}" was already used in this round; pick a new id`);
    ids.add(t.id);
  });
  plan.tasks.forEach((t, i) => {
    for (const dep of t.dependsOn) {
      if (dep === t.id) errors.push(`tasks.${i}.dependsOn: task "${t.id}" depends on itself`);
      else if (!ids.has(dep) && !ctx.doneKeys.includes(dep)) errors.push(`tasks.${i}.dependsOn: unknown task "${dep}"`);
    }
    if (t.agent !== undefined && !ctx.agents.includes(t.agent)) {
      errors.push(`tasks.${i}.agent: unknown agent "${t.agent}" (available: ${ctx.agents.join(', ')})`);
    } else {
      const problem = ctx.routable(t);
      if (problem) errors.push(`tasks.${i}: ${problem}`);
    }
  });
  const cycle = findCycle(plan.tasks);
  if (cycle) errors.push(`tasks: dependency cycle ${cycle.join(' -> ')}`);
  return errors.length > 0 ? { ok: false, errors } : { ok: true, plan };
}

function findCycle(tasks: readonly PlanTask[]): string[] | null {
  const deps = new Map(tasks.map((t) => [t.id, t.dependsOn]));
  const state = new Map<string, 'visiting' | 'done'>();
  const stack: string[] = [];
  const visit = (id: string): string[] | null => {
    if (state.get(id) === 'done' || !deps.has(id)) return null;
    if (state.get(id) === 'visiting') return [...stack.slice(stack.indexOf(id)), id];
    state.set(id, 'visiting');
    stack.push(id);
    for (const d of deps.get(id) ?? []) {
      const c = visit(d);
      if (c) return c;
    }
    stack.pop();
    state.set(id, 'done');
    return null;
  };
  for (const t of tasks) {
    const c = visit(t.id);
    if (c) return c;
  }
  return null;
}
