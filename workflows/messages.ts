/** Every signal, update, query and task-queue name of the session workflow. Importable from any side. */
import { defineQuery, defineSignal, defineUpdate } from '@temporalio/workflow';
import type { SessionStatus } from '../core/schemas';

export const DEFAULT_TASK_QUEUE = 'troupe-sessions';

/** A new user message. Signals are durable even while no worker runs, so a message is never lost. */
export const userMessageSignal = defineSignal<[{ content: string }]>('userMessage');
/** Ends a session that is waiting for input (status done, reason closed). */
export const closeSignal = defineSignal<[]>('close');

export type SessionView = {
  status: SessionStatus;
  statusReason: string | null;
  queuedMessages: number;
  checkpoints: number;
};
export const sessionViewQuery = defineQuery<SessionView>('sessionView');

/** A person's answer to a guardrail `ask`, delivered as a Temporal update to the workflow that asked. */
export type ApprovalDecisionInput = { approvalId: string; decision: 'approve' | 'deny'; reason?: string; by: string };
export type ApprovalDecisionResult = { approvalId: string; status: 'approved' | 'denied' };
/** Rejected (validator) when the approval is unknown to the workflow, already decided or timed out. */
export const decideApprovalUpdate = defineUpdate<ApprovalDecisionResult, [ApprovalDecisionInput]>('decideApproval');

/** A task run tells its session that it waits for (or no longer waits for) an approval. */
export const taskApprovalSignal = defineSignal<[{ taskId: string; approvalId: string; pending: boolean }]>('taskApproval');

/** Restores the session's worktree to one of its snapshots; only while the session waits for input. */
export const rollbackUpdate = defineUpdate<{ sha: string }, [{ snapshot: string; by: string }]>('rollback');
