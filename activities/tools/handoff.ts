import { HANDOFF_DESCRIPTION, HANDOFF_TOOL, HandoffInput } from '../../core/handoff';
import { Plan, SUBMIT_PLAN_DESCRIPTION, SUBMIT_PLAN_TOOL } from '../../core/plan';
import type { ToolDefinition } from './index';

/**
 * `handoff` is offered to the model like any tool, but the task workflow handles it (the orchestrator owns the flow):
 * a handoff call never reaches the tool activity. If it ever does (a chat session has no task to hand over), the model
 * is told so.
 */
export const HANDOFF: ToolDefinition = {
  name: HANDOFF_TOOL,
  description: HANDOFF_DESCRIPTION,
  input: HandoffInput,
  async run() {
    return 'handoff is only available inside a task of an orchestrated session; finish the work yourself';
  },
};

/** `submit_plan` is offered to planners; the session workflow validates and acts on it, never the tool activity. */
export const SUBMIT_PLAN: ToolDefinition = {
  name: SUBMIT_PLAN_TOOL,
  description: SUBMIT_PLAN_DESCRIPTION,
  input: Plan,
  async run() {
    return 'submit_plan is handled by the orchestrator; it is only available to a planner while it plans';
  },
};
