/** Every signal, update, query and task-queue name of the session workflow. Importable from any side. */
import { defineQuery, defineSignal } from '@temporalio/workflow';
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
