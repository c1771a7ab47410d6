export { sessionWorkflow } from './session';
export type { SessionWorkflowInput, SessionOutcome } from './session';
export { orchestratedSessionWorkflow } from './orchestrated';
export type { OrchestratedSessionInput } from './orchestrated';
export { taskWorkflow } from './task';
export type { TaskWorkflowInput } from './task';
