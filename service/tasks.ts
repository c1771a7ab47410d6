/** The task registry's read side: the task tree of a session and one task with its artifacts. */
import { TroupeError } from '../core/errors';
import type { Artifact, TaskNode, TaskStatus, TaskView } from '../core/schemas';
import type { Db } from '../lib/db/client';
import { toEntryView } from './blackboard';

type TaskRow = NonNullable<Awaited<ReturnType<Db['task']['findUnique']>>>;

export function toTaskView(row: TaskRow, artifacts: Artifact[] = []): TaskView {
  return {
    id: row.id,
    ...(row.parentId ? { parentId: row.parentId } : {}),
    sessionId: row.sessionId,
    ...(row.assignedAgent ? { assignedAgent: row.assignedAgent } : {}),
    goal: row.goal,
    status: row.status as TaskStatus,
    input: row.input,
    ...(row.output !== null ? { output: row.output } : {}),
    artifacts: [...((row.artifacts as Artifact[] | null) ?? []), ...artifacts],
    createdAt: row.createdAt.toISOString(),
    updatedAt: row.updatedAt.toISOString(),
    round: row.round,
    planKey: row.planKey,
    role: row.role,
    dependsOn: row.dependsOn,
    agentVersion: row.agentVersion,
    attempts: row.attempts,
    statusReason: row.statusReason,
  };
}

/** Artifacts a task wrote on the blackboard (kind `artifact`), newest value of each key. */
async function artifactsOf(db: Db, taskIds: string[]): Promise<Map<string, Artifact[]>> {
  const rows = await db.blackboardEntry.findMany({
    where: { taskId: { in: taskIds }, kind: 'artifact', OR: [{ expiresAt: null }, { expiresAt: { gt: new Date() } }] },
    orderBy: { createdAt: 'asc' },
  });
  const byTask = new Map<string, Map<string, Artifact>>();
  for (const row of rows) {
    const e = toEntryView(row);
    const m = byTask.get(row.taskId!) ?? new Map<string, Artifact>();
    m.set(e.key, { id: e.id, kind: 'blackboard', name: e.key, data: e.value });
    byTask.set(row.taskId!, m);
  }
  return new Map([...byTask].map(([id, m]) => [id, [...m.values()]]));
}

export function createTaskService(db: Db) {
  return {
    /** The session's task tree: one root per round (the planner's), its planned tasks as children, in creation order. */
    async tree(sessionId: string): Promise<TaskNode[]> {
      const session = await db.session.findUnique({ where: { id: sessionId }, select: { id: true } });
      if (!session) throw new TroupeError('not_found', `session ${sessionId} not found`);
      const rows = await db.task.findMany({ where: { sessionId }, orderBy: [{ round: 'asc' }, { createdAt: 'asc' }, { id: 'asc' }] });
      const artifacts = await artifactsOf(db, rows.map((r) => r.id));
      const nodes = new Map<string, TaskNode>(rows.map((r) => [r.id, { ...toTaskView(r, artifacts.get(r.id)), children: [] }]));
      const roots: TaskNode[] = [];
      for (const r of rows) {
        const node = nodes.get(r.id)!;
        const parent = r.parentId ? nodes.get(r.parentId) : undefined;
        if (parent) parent.children.push(node);
        else roots.push(node);
      }
      return roots;
    },

    async get(taskId: string): Promise<TaskView> {
      const row = await db.task.findUnique({ where: { id: taskId } });
      if (!row) throw new TroupeError('not_found', `task ${taskId} not found`);
      const artifacts = await artifactsOf(db, [row.id]);
      return toTaskView(row, artifacts.get(row.id));
    },
  };
}

export type TaskService = ReturnType<typeof createTaskService>;
