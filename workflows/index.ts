export { sessionWorkflow } from './session';
export type { SessionWorkflowInput, SessionOutcome } from './session';
