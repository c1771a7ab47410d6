/**
 * Durable human approval inside a workflow. A guardrail `ask` blocks the step: the workflow waits (a timer plus a
 * condition, so it survives worker restarts) for the `decideApproval` update; a timeout is a denial. The update's
 * validator refuses unknown, already decided and expired approvals, which the API turns into a 409.
 *
 * `open()` registers the approval and starts its expiry timer before the request is filed, so a decision can never
 * arrive for an approval the workflow does not know. Approval ids derive from the session id and the step, never
 * from the workflow id (replays of saved histories run under other ids).
 */
import { ApplicationFailure, CancellationScope, setHandler, sleep, Trigger } from '@temporalio/workflow';
import type { ApprovalOutcome } from '../core/approval';
import { decideApprovalUpdate, type ApprovalDecisionInput } from './messages';

type Waiting = { decision?: ApprovalDecisionInput; expired: boolean; settled: Trigger<void>; timer: CancellationScope };

export class ApprovalGate {
  private readonly waiting = new Map<string, Waiting>();

  constructor() {
    setHandler(
      decideApprovalUpdate,
      (input) => {
        const entry = this.waiting.get(input.approvalId);
        if (entry && !entry.decision && !entry.expired) {
          entry.decision = input;
          entry.settled.resolve();
        }
        return { approvalId: input.approvalId, status: input.decision === 'approve' ? 'approved' : 'denied' };
      },
      {
        validator: (input) => {
          const entry = this.waiting.get(input.approvalId);
          if (!entry || entry.expired) throw ApplicationFailure.nonRetryable(`approval ${input.approvalId} is not waiting for a decision (decided, expired or unknown)`, 'conflict');
          if (entry.decision) throw ApplicationFailure.nonRetryable(`approval ${input.approvalId} was already decided`, 'conflict');
        },
      },
    );
  }

  /** Approvals this workflow is waiting on now. */
  pendingIds(): string[] {
    return [...this.waiting.entries()].filter(([, w]) => !w.decision && !w.expired).map(([id]) => id);
  }

  /** Registers `approvalId` and starts its expiry timer. Call before filing the request. */
  open(approvalId: string, timeoutMs: number): void {
    if (this.waiting.has(approvalId)) return;
    const timer = new CancellationScope();
    const entry: Waiting = { expired: false, settled: new Trigger<void>(), timer };
    this.waiting.set(approvalId, entry);
    timer.run(() => sleep(Math.max(1, timeoutMs))).then(
      () => {
        if (entry.decision) return;
        entry.expired = true;
        entry.settled.resolve();
      },
      (err: unknown) => {
        if (!entry.decision) entry.settled.reject(err); // the workflow was cancelled while waiting
      },
    );
  }

  /** Waits for the decision on `approvalId` (opened before) or its expiry. */
  async wait(approvalId: string): Promise<ApprovalOutcome> {
    const entry = this.waiting.get(approvalId);
    if (!entry) throw new Error(`approval ${approvalId} was not opened`);
    try {
      await entry.settled;
      if (!entry.decision) return { status: 'expired', by: null, reason: 'no decision before the approval timed out' };
      entry.timer.cancel();
      const d = entry.decision;
      return { status: d.decision === 'approve' ? 'approved' : 'denied', by: d.by, reason: d.reason ?? null };
    } finally {
      this.waiting.delete(approvalId);
    }
  }
}
