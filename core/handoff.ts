/** The handoff tool's contract, pure so the task workflow validates it itself (the orchestrator owns the flow). */
import { z } from 'zod';

export const HANDOFF_TOOL = 'handoff';

export const HandoffInput = z
  .object({
    to: z.string().min(1).max(63).describe('id of the agent that should take over this task'),
    reason: z.string().trim().min(1).max(2000).describe('why the other agent is better placed'),
    notes: z.string().max(50_000).optional().describe('what you found or did so far, for the next agent'),
  })
  .strict();
export type HandoffInput = z.infer<typeof HandoffInput>;

export const HANDOFF_DESCRIPTION =
  'Hand your current task to another agent (for example a reviewer) and stop working on it. ' +
  'Give the reason and notes on what you did so far.';
