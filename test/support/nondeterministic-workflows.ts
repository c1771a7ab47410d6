/**
 * A deliberately incompatible `sessionWorkflow`, for test/replay.test.ts: it starts a timer where the real workflow
 * schedules its first checkpoint activity, so replaying any recorded history against it must fail with a
 * determinism violation. It proves the replay test would catch a non-deterministic change. Never registered on a worker.
 */
import { sleep } from '@temporalio/workflow';
import type { SessionOutcome, SessionWorkflowInput } from '../../workflows';

export async function sessionWorkflow(input: SessionWorkflowInput): Promise<SessionOutcome> {
  await sleep('1 second');
  return { status: 'done', reason: `changed workflow for ${input.sessionId}`, finalAnswer: null };
}
