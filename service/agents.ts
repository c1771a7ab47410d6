import { AgentDefinition } from '../core/schemas';
import type { Db } from '../lib/db/client';
import { TroupeError } from '../core/errors';

/** Built-in agents, upserted at start-up. The full agent registry (versions, YAML, API) builds on this table. */
export const BUILTIN_AGENTS: readonly AgentDefinition[] = [
  {
    id: 'assistant',
    name: 'Assistant',
    role: 'assistant',
    model: 'default',
    instructions:
      'You are Troupe\'s general assistant. Answer the user\'s request directly. Use the blackboard tools to keep ' +
      'facts that later steps of this session will need.',
    tools: ['blackboard_write', 'blackboard_read'],
    permissions: [],
    memoryScope: 'session',
  },
];

export const DEFAULT_AGENT_ID = 'assistant';

export async function ensureBuiltinAgents(db: Db): Promise<void> {
  // Insert-if-missing in one statement: several API processes start at once, and Prisma's upsert is not atomic.
  await db.agentDefinition.createMany({ data: BUILTIN_AGENTS.map((a) => ({ ...a })), skipDuplicates: true });
}

export async function getAgent(db: Db, id: string): Promise<AgentDefinition | null> {
  const row = await db.agentDefinition.findUnique({ where: { id } });
  if (!row) return null;
  const parsed = AgentDefinition.safeParse(row);
  if (!parsed.success) throw new TroupeError('internal', `stored agent "${id}" is invalid: ${parsed.error.message}`);
  return parsed.data;
}

/** Saves an agent definition (validated); bumps its version when it changes. */
export async function putAgent(db: Db, agent: AgentDefinition): Promise<void> {
  const a = AgentDefinition.parse(agent);
  await db.agentDefinition.upsert({ where: { id: a.id }, create: { ...a }, update: { ...a, version: { increment: 1 } } });
}
