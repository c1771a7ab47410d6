/**
 * The task agents the orchestration scenarios in test/scenarios/plan-*.yaml assign work to (by id). Shared by
 * test/orchestration.test.ts and scripts/record-histories.ts so the replay histories run the same stories.
 */
import type { AgentDefinition } from '../../core/schemas';

const base = {
  permissions: [] as string[],
  instructions: 'A scripted agent of the orchestration scenarios.',
  tools: [] as string[],
  memoryScope: 'session' as const,
};

export const ORCHESTRATION_AGENTS: readonly AgentDefinition[] = [
  { ...base, id: 'o-slow', name: 'o-slow', role: 'o-writer', model: 'scripted:task-slow' },
  { ...base, id: 'o-echo', name: 'o-echo', role: 'o-echoer', model: 'scripted:task-echo' },
  { ...base, id: 'o-flaky', name: 'o-flaky', role: 'o-flaky', model: 'scripted:task-fails-first-attempt', retry: { maxAttempts: 2, backoffSeconds: 0 } },
  { ...base, id: 'o-sleepy', name: 'o-sleepy', role: 'o-sleeper', model: 'scripted:task-sleepy', timeoutSeconds: 2 },
  { ...base, id: 'o-coder', name: 'o-coder', role: 'o-coder', model: 'scripted:task-hands-off', tools: ['handoff'] },
  { ...base, id: 'o-reviewer', name: 'o-reviewer', role: 'o-reviewer', model: 'scripted:task-reviews' },
  { ...base, id: 'o-writer', name: 'o-writer', role: 'o-fact-writer', model: 'scripted:task-writes-fact', tools: ['blackboard_write'] },
  { ...base, id: 'o-reader', name: 'o-reader', role: 'o-reader', model: 'scripted:task-echo', tools: ['blackboard_read'], memoryScope: 'project' },
  { ...base, id: 'o-blind', name: 'o-blind', role: 'o-blind', model: 'scripted:task-echo', memoryScope: 'none' },
];

/** A scripted planner (role `planner`, so sessions on it are orchestrated). */
export function scriptedPlanner(id: string, scenario: string): AgentDefinition {
  return { ...base, id, name: id, role: 'planner', model: `scripted:${scenario}` };
}
