/** Approval ids and texts, pure so workflows, activities and the API agree on them. */

/** FNV-1a, 64-bit, as 16 hex digits: a short stable id from a long key (no crypto in workflow code). */
function fnv1a64(text: string): string {
  let hash = 0xcbf29ce484222325n;
  for (let i = 0; i < text.length; i++) {
    hash ^= BigInt(text.charCodeAt(i));
    hash = (hash * 0x100000001b3n) & 0xffffffffffffffffn;
  }
  return hash.toString(16).padStart(16, '0');
}

/**
 * The approval for one tool call of one step of a session (the step key names the task run, if any): the same
 * request, retried or replayed, has the same id.
 */
export function approvalIdOf(sessionId: string, stepKey: string): string {
  return `apr_${fnv1a64(`${sessionId}|${stepKey}`)}`;
}

export type ApprovalOutcome = { status: 'approved' | 'denied' | 'expired'; by: string | null; reason: string | null };

/** What the model is told when its call was not approved. */
export function deniedResult(tool: string, outcome: ApprovalOutcome): string {
  if (outcome.status === 'expired') return `${tool} was not run: the approval request timed out (an expired approval is a denial). Choose another way or ask the user.`;
  return `${tool} was not run: denied by ${outcome.by ?? 'a reviewer'}${outcome.reason ? `: ${outcome.reason}` : ''}. Choose another way.`;
}

/** Default time a person has to decide before the request expires (a denial). */
export const DEFAULT_APPROVAL_TIMEOUT_MS = 60 * 60 * 1000;
