/**
 * Durable human approval inside a workflow. A guardrail `ask` blocks the step: the workflow waits (a Temporal
 * condition with a timer, so it survives worker restarts) for the `decideApproval` update; a timeout is a denial.
 * The update's validator refuses unknown, already decided and expired approvals, which the API turns into a 409.
 */
import { ApplicationFailure, condition, setHandler } from '@temporalio/workflow';
import type { ApprovalOutcome } from '../core/approval';
import { decideApprovalUpdate, type ApprovalDecisionInput } from './messages';

type Waiting = { decision?: ApprovalDecisionInput };

export class ApprovalGate {
  private readonly waiting = new Map<string, Waiting>();

  constructor() {
    setHandler(
      decideApprovalUpdate,
      (input) => {
        const entry = this.waiting.get(input.approvalId)!;
        entry.decision = input;
        return { approvalId: input.approvalId, status: input.decision === 'approve' ? 'approved' : 'denied' };
      },
      {
        validator: (input) => {
          const entry = this.waiting.get(input.approvalId);
          if (!entry) throw ApplicationFailure.nonRetryable(`approval ${input.approvalId} is not waiting for a decision (decided, expired or unknown)`, 'conflict');
          if (entry.decision) throw ApplicationFailure.nonRetryable(`approval ${input.approvalId} was already decided`, 'conflict');
        },
      },
    );
  }

  /** Approvals this workflow is waiting on now. */
  pendingIds(): string[] {
    return [...this.waiting.entries()].filter(([, w]) => !w.decision).map(([id]) => id);
  }

  /** Waits for the decision on `approvalId`, at most `timeoutMs`. */
  async wait(approvalId: string, timeoutMs: number): Promise<ApprovalOutcome> {
    const entry: Waiting = {};
    this.waiting.set(approvalId, entry);
    try {
      const decided = await condition(() => entry.decision !== undefined, Math.max(1, timeoutMs));
      if (!decided || !entry.decision) return { status: 'expired', by: null, reason: 'no decision before the approval timed out' };
      const d = entry.decision;
      return { status: d.decision === 'approve' ? 'approved' : 'denied', by: d.by, reason: d.reason ?? null };
    } finally {
      this.waiting.delete(approvalId);
    }
  }
}
