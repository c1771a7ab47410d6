/**
 * Approvals: the guardrail `ask`s of a session (its own and its tasks'), and their decision. A decision is a Temporal
 * update on the workflow that asked, which checks that the approval is still waiting, so deciding twice, or after the
 * timeout, is a clean 409 whichever front door it comes from.
 */
import { WorkflowNotFoundError, WorkflowUpdateFailedError, type Client } from '@temporalio/client';
import { ApplicationFailure } from '@temporalio/common';
import { TroupeError } from '../core/errors';
import type { ApprovalStatus, ApprovalView, DecideApprovalBody } from '../core/schemas';
import type { Db } from '../lib/db/client';
import type { Logger } from '../lib/logger';
import { decideApprovalUpdate } from '../workflows/messages';

type ApprovalRow = NonNullable<Awaited<ReturnType<Db['approval']['findUnique']>>>;

export function toApprovalView(row: ApprovalRow): ApprovalView {
  return {
    id: row.id,
    sessionId: row.sessionId,
    taskId: row.taskId,
    agentId: row.agentId,
    tool: row.tool,
    input: row.input,
    decision: row.decision,
    status: row.status as ApprovalStatus,
    decidedBy: row.decidedBy,
    reason: row.reason,
    expiresAt: row.expiresAt.toISOString(),
    createdAt: row.createdAt.toISOString(),
    decidedAt: row.decidedAt?.toISOString() ?? null,
  };
}

export function createApprovalService(deps: { db: Db; temporal: Client; logger: Logger }) {
  const { db, temporal, logger } = deps;

  async function load(id: string): Promise<ApprovalRow> {
    const row = await db.approval.findUnique({ where: { id } });
    if (!row) throw new TroupeError('not_found', `approval ${id} not found`);
    return row;
  }

  return {
    async list(sessionId: string, status?: ApprovalStatus): Promise<ApprovalView[]> {
      const session = await db.session.findUnique({ where: { id: sessionId }, select: { id: true } });
      if (!session) throw new TroupeError('not_found', `session ${sessionId} not found`);
      const rows = await db.approval.findMany({ where: { sessionId, ...(status ? { status } : {}) }, orderBy: [{ createdAt: 'asc' }, { id: 'asc' }] });
      return rows.map(toApprovalView);
    },

    async get(id: string): Promise<ApprovalView> {
      return toApprovalView(await load(id));
    },

    async decide(id: string, body: DecideApprovalBody): Promise<ApprovalView> {
      const row = await load(id);
      const conflict = (why: string) => new TroupeError('conflict', `cannot decide approval ${id}: ${why}`, { status: row.status });
      if (row.status !== 'pending') throw conflict(`it is already ${row.status}`);
      const by = body.by ?? 'api';
      try {
        const result = await temporal.workflow.getHandle(row.workflowId).executeUpdate(decideApprovalUpdate, {
          args: [{ approvalId: id, decision: body.decision, by, ...(body.reason ? { reason: body.reason } : {}) }],
        });
        logger.info({ sessionId: row.sessionId, approvalId: id, decision: result.status, by }, 'approval decided');
        // The workflow records the decision in Postgres as its next step; answer with what was decided.
        return { ...toApprovalView(row), status: result.status, decidedBy: by, reason: body.reason ?? null, decidedAt: new Date().toISOString() };
      } catch (err) {
        if (err instanceof WorkflowNotFoundError) throw conflict('the workflow that asked is no longer running');
        if (err instanceof WorkflowUpdateFailedError) {
          const cause = err.cause;
          if (cause instanceof ApplicationFailure && cause.type === 'conflict') throw conflict(cause.message.replace(/^approval \S+ /, 'it '));
        }
        const fresh = await load(id);
        if (fresh.status !== 'pending') throw conflict(`it is already ${fresh.status}`);
        throw err;
      }
    },
  };
}

export type ApprovalService = ReturnType<typeof createApprovalService>;
