/**
 * The context builder's pure half: what each agent call is told. An agent gets only its instructions, its task, the
 * blackboard entries in its scope and the artifacts handed to it, nothing else from the session. The activity adds
 * the blackboard (read fresh for every call) and records the exact context in the trace.
 */
import type { BlackboardEntry } from './schemas';

/** The output of a finished task, handed to the tasks that depend on it. */
export type HandedArtifact = { taskId: string; planKey: string; agent: string; goal: string; output: string };

export type HandoffNote = { from: string; reason: string; notes?: string };

/** Catalogue line the planner sees for each agent it may assign. */
export type AgentSummary = { id: string; role: string; description?: string };

const MAX_VALUE_CHARS = 4_000;

function clip(text: string, max: number): string {
  return text.length <= max ? text : `${text.slice(0, max)}… [${text.length - max} more characters]`;
}

export function taskPrompt(args: { goal: string; input?: unknown; handed: readonly HandedArtifact[]; handoff?: HandoffNote }): string {
  const parts = [`# Your task\n${args.goal}`];
  if (args.input !== undefined && args.input !== null) parts.push(`# Task input\n${JSON.stringify(args.input, null, 2)}`);
  if (args.handed.length > 0) {
    parts.push(
      '# Results handed to you by the tasks you depend on\n' +
        args.handed.map((h) => `## ${h.planKey} (${h.agent}): ${h.goal}\n${h.output}`).join('\n\n'),
    );
  }
  if (args.handoff) {
    parts.push(
      `# Handed over by ${args.handoff.from}\nReason: ${args.handoff.reason}` + (args.handoff.notes ? `\nNotes:\n${args.handoff.notes}` : ''),
    );
  }
  parts.push('When the task is done, reply with the result as plain text (no tool call).');
  return parts.join('\n\n');
}

/** The blackboard part of the system prompt. Empty when the agent sees no entries. */
export function blackboardSection(entries: readonly Pick<BlackboardEntry, 'key' | 'kind' | 'value' | 'scope' | 'provenance'>[]): string {
  if (entries.length === 0) return '';
  const lines = entries.map((e) => {
    const value = typeof e.value === 'string' ? e.value : JSON.stringify(e.value);
    return `- [${e.kind}, ${e.scope}] ${e.key}: ${clip(value, MAX_VALUE_CHARS)} (by ${e.provenance.actor})`;
  });
  return `\n\n# Blackboard (shared facts, artifacts and decisions visible to you)\n${lines.join('\n')}`;
}

export function planningPrompt(goal: string, agents: readonly AgentSummary[], round: number): string {
  const catalogue = agents.map((a) => `- ${a.id} (role ${a.role})${a.description ? `: ${a.description}` : ''}`).join('\n');
  return (
    (round > 1 ? `# Follow-up request\n${goal}` : `# Goal\n${goal}`) +
    `\n\n# Agents you can assign (by role or by id)\n${catalogue}\n\n` +
    'Break the goal into tasks and call the submit_plan tool. Tasks that do not depend on each other run in parallel.'
  );
}

export type TaskReport = { planKey: string; goal: string; agent: string | null; status: string; reason: string | null; output: string | null };

export function replanPrompt(reports: readonly TaskReport[], replansLeft: number): string {
  const lines = reports.map(
    (r) => `- ${r.planKey} [${r.status}${r.reason ? `: ${r.reason}` : ''}] (${r.agent ?? 'unassigned'}) ${r.goal}` + (r.output ? `\n  result: ${clip(r.output, MAX_VALUE_CHARS)}` : ''),
  );
  return (
    `Some tasks could not be completed. Current state of the tasks:\n${lines.join('\n')}\n\n` +
    'Submit a new plan with only the remaining work (new task ids; you may depend on tasks that are done). ' +
    `Replans left after this one: ${replansLeft}.`
  );
}

export function synthesisPrompt(reports: readonly TaskReport[]): string {
  const lines = reports.map((r) => `## ${r.planKey} [${r.status}] (${r.agent ?? 'unassigned'}): ${r.goal}\n${r.output ?? r.reason ?? ''}`);
  return `All tasks have finished. Their results:\n\n${lines.join('\n\n')}\n\nWrite the final answer for the user as plain text. Do not call any tool.`;
}
