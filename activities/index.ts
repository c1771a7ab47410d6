/**
 * Activities: everything the session workflow does that touches the world. Built by `createActivities(deps)`
 * so the worker passes real dependencies and tests can pass their own. Every activity is safe to retry:
 * trace events and side effects carry idempotency keys that come from the workflow.
 */
import { ApplicationFailure, Context } from '@temporalio/activity';
import { TroupeError } from '../core/errors';
import { ModelResponse, type ChatMessage, type ToolResultBlock, type ToolUseBlock } from '../core/model';
import { parseMcpToolName, type AgentDefinition } from '../core/schemas';
import type { SessionSnapshot } from '../core/session';
import type { TaskSnapshot } from '../core/orchestrator';
import { blackboardSection } from '../core/context';
import { readEntries } from '../service/blackboard';
import type { Prisma } from '../generated/prisma/client';
import type { Db } from '../lib/db/client';
import { appendTraceEvents, type NewTraceEvent } from '../lib/db/trace';
import type { Logger } from '../lib/logger';
import type { ResolvedModel } from './models/registry';
import type { ToolRegistry } from './tools';
import type { McpClientManager } from './tools/mcp-client';
import { CODING_TOOL_META, resolveToolFacts, type WorkspaceContext } from './tools/coding';
import { evaluate, type GuardrailDecision, type Policy } from '../core/policy';
import { redactString } from '../core/redact';
import { beginStep, createWorkspace, endStep, git, restore, type Workspace } from '../lib/workspace';

export type ActivityDeps = {
  db: Db;
  resolveModel: (model: string, role?: string) => ResolvedModel;
  tools: ToolRegistry;
  /** Tools of the agents' external MCP servers (`mcp__<server>__<tool>`); absent: agents get none. */
  mcp?: McpClientManager;
  logger: Logger;
  /** Max output tokens per model call. */
  maxTokens?: number;
  /** The guardrail policy every tool call is evaluated against (lib/policy-files.ts). */
  policy: Policy;
  /** Runs commands for run_command (the sandbox bound in); absent when commands are disabled. */
  runCommand?: WorkspaceContext['runCommand'];
  /** Where session worktrees live. */
  workspacesDir: string;
  /** Values redacted verbatim (besides credential-looking text) from tool results before the model sees them. */
  secrets?: readonly string[];
};

export type CheckpointInput = {
  sessionId: string;
  /** On the first checkpoint: what it takes to create the session row if the API has not written it. */
  create?: { goal: string; agent: AgentDefinition; metadata: Record<string, unknown>; project?: string | null };
  /** The session's mirrored state; absent for a task workflow, which only writes trace events. */
  snapshot?: SessionSnapshot;
  /** Tasks whose state changed since the last checkpoint (orchestrated sessions). */
  tasks?: TaskSnapshot[];
  events: (Omit<NewTraceEvent, 'payload'> & { payload: unknown })[];
};

export type CallModelInput = {
  sessionId: string;
  step: number;
  agent: AgentDefinition;
  messages: ChatMessage[];
  /** The session's project: blackboard entries of `project` scope come from it. */
  project?: string | null;
  /** The task this call works on (orchestrated sessions); its events carry the task id. */
  taskId?: string;
  /** Task attempt number (1-based), for providers that script failures. */
  taskAttempt?: number;
  /** Prefix of this call's trace keys, unique per workflow run within the session (e.g. the task run). */
  keyPrefix?: string;
  /** Tools offered instead of the agent's own (the planner gets only submit_plan; synthesis none). */
  tools?: string[];
  /** Index of the first message not yet recorded in an earlier `model.context` event of this conversation. */
  recordFrom?: number;
};
/** A tool call's result; `approvalRequest` (the guardrail decision) when the policy asks a person first. */
export type RunToolResult = ToolResultBlock & { approvalRequest?: GuardrailDecision };

export type PrepareWorkspaceInput = { sessionId: string; repo: string; workspaceId: string; baseRef?: string };

export type RequestApprovalInput = {
  sessionId: string;
  taskId?: string;
  approvalId: string;
  stepKey: string;
  workflowId: string;
  agentId: string;
  tool: string;
  input: unknown;
  decision: unknown;
  expiresAt: string;
};
export type SettleApprovalInput = {
  sessionId: string;
  taskId?: string;
  approvalId: string;
  stepKey: string;
  status: 'approved' | 'denied' | 'expired' | 'cancelled';
  by: string | null;
  reason: string | null;
};

export type RunToolInput = {
  sessionId: string;
  step: number;
  agent: AgentDefinition;
  call: ToolUseBlock;
  /** The session's (or task's) worktree, when the session names a repository. */
  workspace?: Workspace;
  /** Set when a person approved this call after a guardrail `ask`. */
  approval?: { approvalId: string; by: string };
  project?: string | null;
  taskId?: string;
  /** Prefix of the call's idempotency key, unique per workflow run within the session. */
  keyPrefix?: string;
};

const DELTA_FLUSH_MS = 100;
const HEARTBEAT_MS = 2_000;

/** Maps a thrown error to a Temporal failure whose `type` is our stable error code. */
function toFailure(err: unknown): unknown {
  if (err instanceof TroupeError) {
    const retryable =
      err.code === 'model_error' &&
      (typeof err.details !== 'object' || err.details === null || (err.details as { retryable?: boolean }).retryable !== false);
    return ApplicationFailure.create({ type: err.code, message: err.message, nonRetryable: !retryable });
  }
  return err;
}

/**
 * Upserts the tasks a checkpoint changed. A row is only overwritten by a newer session checkpoint (`state_version`),
 * so a retried or late checkpoint never rolls the task tree back.
 */
async function mirrorTasks(tx: Prisma.TransactionClient, sessionId: string, version: number, tasks: TaskSnapshot[]): Promise<void> {
  const col = <K extends keyof TaskSnapshot>(k: K) => tasks.map((t) => t[k]);
  await tx.$executeRaw`
    INSERT INTO "tasks" ("id", "parent_id", "session_id", "round", "plan_key", "goal", "role", "input", "depends_on",
      "assigned_agent", "agent_version", "status", "status_reason", "attempts", "output", "state_version", "updated_at")
    SELECT u.id, u.parent_id, ${sessionId}, u.round, u.plan_key, u.goal, u.role, u.input::jsonb,
      ARRAY(SELECT jsonb_array_elements_text(u.depends_on::jsonb)), u.assigned_agent, u.agent_version, u.status,
      u.status_reason, u.attempts, u.output::jsonb, ${version}, CURRENT_TIMESTAMP
    FROM unnest(
      ${col('id')}::text[], ${col('parentId')}::text[], ${col('round')}::int[], ${col('planKey')}::text[], ${col('goal')}::text[],
      ${col('role')}::text[], ${tasks.map((t) => JSON.stringify(t.input ?? null))}::text[],
      ${tasks.map((t) => JSON.stringify(t.dependsOn))}::text[], ${col('assignedAgent')}::text[], ${col('agentVersion')}::int[],
      ${col('status')}::text[], ${col('statusReason')}::text[], ${col('attempts')}::int[],
      ${tasks.map((t) => (t.output === null ? null : JSON.stringify(t.output)))}::text[]
    ) AS u(id, parent_id, round, plan_key, goal, role, input, depends_on, assigned_agent, agent_version, status, status_reason, attempts, output)
    ON CONFLICT ("id") DO UPDATE SET
      "assigned_agent" = EXCLUDED."assigned_agent", "agent_version" = EXCLUDED."agent_version", "status" = EXCLUDED."status",
      "status_reason" = EXCLUDED."status_reason", "attempts" = EXCLUDED."attempts", "output" = EXCLUDED."output",
      "state_version" = EXCLUDED."state_version", "updated_at" = CURRENT_TIMESTAMP
    WHERE "tasks"."state_version" < EXCLUDED."state_version"`;
}

export function createActivities(deps: ActivityDeps) {
  const { db, logger } = deps;

  return {
    /** Appends the workflow's trace events and mirrors its state, in one transaction. Older versions never overwrite newer. */
    async checkpoint(input: CheckpointInput): Promise<{ lastSeq: number }> {
      const { snapshot } = input;
      return db.$transaction(async (tx) => {
        if (input.create) {
          const { goal, agent, metadata, project } = input.create;
          await tx.session.createMany({
            data: [{ id: input.sessionId, goal, agentId: agent.id, agentSnapshot: agent, status: 'pending', metadata: metadata as object, project: project ?? null }],
            skipDuplicates: true,
          });
        }
        const { lastSeq } = await appendTraceEvents(tx, input.sessionId, input.events);
        if (input.tasks && input.tasks.length > 0 && snapshot) await mirrorTasks(tx, input.sessionId, snapshot.version, input.tasks);
        if (!snapshot) return { lastSeq };
        await tx.session.updateMany({
          where: { id: input.sessionId, stateVersion: { lt: snapshot.version } },
          data: {
            status: snapshot.status,
            statusReason: snapshot.statusReason,
            finalAnswer: snapshot.finalAnswer,
            inputTokens: snapshot.usage.inputTokens,
            outputTokens: snapshot.usage.outputTokens,
            stateVersion: snapshot.version,
            ...(snapshot.ended ? { endedAt: new Date() } : {}),
          },
        });
        return { lastSeq };
      });
    },

    /** Files a guardrail `ask` (idempotent: the id comes from the workflow and the step) and traces it. */
    async requestApproval(input: RequestApprovalInput): Promise<void> {
      await db.$transaction(async (tx) => {
        await tx.approval.createMany({
          data: [
            {
              id: input.approvalId,
              sessionId: input.sessionId,
              taskId: input.taskId ?? null,
              workflowId: input.workflowId,
              agentId: input.agentId,
              tool: input.tool,
              input: (input.input ?? null) as object,
              decision: (input.decision ?? {}) as object,
              status: 'pending',
              expiresAt: new Date(input.expiresAt),
            },
          ],
          skipDuplicates: true,
        });
        await appendTraceEvents(tx, input.sessionId, [
          {
            key: `${input.stepKey}:approval.requested`,
            runId: Context.current().info.workflowExecution?.runId ?? 'unknown',
            ...(input.taskId ? { taskId: input.taskId } : {}),
            actor: 'guardrails',
            type: 'approval.requested',
            payload: { approvalId: input.approvalId, tool: input.tool, input: input.input, decision: input.decision, expiresAt: input.expiresAt, agent: input.agentId },
            timestamp: new Date().toISOString(),
          },
        ]);
      });
    },

    /** Records how an approval ended (approved, denied, expired, cancelled); only a pending approval changes. */
    async settleApproval(input: SettleApprovalInput): Promise<void> {
      await db.$transaction(async (tx) => {
        await tx.approval.updateMany({
          where: { id: input.approvalId, status: 'pending' },
          data: { status: input.status, decidedBy: input.by, reason: input.reason, decidedAt: new Date() },
        });
        await appendTraceEvents(tx, input.sessionId, [
          {
            key: `${input.stepKey}:approval.decided`,
            runId: Context.current().info.workflowExecution?.runId ?? 'unknown',
            ...(input.taskId ? { taskId: input.taskId } : {}),
            actor: input.by ? `user:${input.by}` : 'guardrails',
            type: 'approval.decided',
            payload: { approvalId: input.approvalId, status: input.status, by: input.by, reason: input.reason },
            timestamp: new Date().toISOString(),
          },
        ]);
      });
    },

    /** One model call, streamed: text deltas become `model.delta` trace events as they arrive. */
    async callModel(input: CallModelInput): Promise<ModelResponse> {
      const ctx = Context.current();
      const { attempt, workflowExecution } = ctx.info;
      const log = logger.child({ sessionId: input.sessionId, ...(input.taskId ? { taskId: input.taskId } : {}), activity: 'callModel', attempt });
      const prefix = input.keyPrefix ?? '';
      const runId = workflowExecution?.runId ?? 'unknown';
      const actor = `agent:${input.agent.id}`;
      let resolved: ResolvedModel;
      try {
        resolved = deps.resolveModel(input.agent.model, input.agent.role);
      } catch (err) {
        throw toFailure(err);
      }

      // The context builder: instructions + the blackboard entries in the agent's scope (read now, so the call sees
      // what parallel agents wrote meanwhile) + the task conversation. Recorded exactly as sent, before the call.
      const entries = await readEntries(db, {
        session: { id: input.sessionId, project: input.project ?? null },
        memoryScope: input.agent.memoryScope,
      });
      const system = input.agent.instructions + blackboardSection(entries);
      const toolNames = input.tools ?? input.agent.tools;
      const tools = [...deps.tools.specs(toolNames), ...((await deps.mcp?.specs(input.agent, toolNames)) ?? [])];
      const recordFrom = Math.min(input.recordFrom ?? 0, input.messages.length);
      await appendTraceEvents(db, input.sessionId, [
        {
          key: `${prefix}x${input.step}:${attempt}`,
          runId,
          ...(input.taskId ? { taskId: input.taskId } : {}),
          actor,
          type: 'model.context',
          payload: {
            model: resolved.qualified,
            attempt,
            system,
            tools: tools.map((t) => t.name),
            blackboard: entries.map((e) => e.id),
            messageOffset: recordFrom,
            messages: input.messages.slice(recordFrom),
          },
          timestamp: new Date().toISOString(),
        },
      ]);

      let buffer = '';
      let deltaIndex = 0;
      let flushing: Promise<unknown> = Promise.resolve();
      const flush = () => {
        if (buffer.length === 0) return flushing;
        const event: NewTraceEvent = {
          key: `${prefix}d${input.step}:${attempt}:${deltaIndex++}`,
          runId,
          ...(input.taskId ? { taskId: input.taskId } : {}),
          actor,
          type: 'model.delta',
          payload: { text: buffer, attempt },
          timestamp: new Date().toISOString(),
        };
        buffer = '';
        flushing = flushing.then(() => appendTraceEvents(db, input.sessionId, [event]));
        return flushing;
      };
      const flushTimer = setInterval(() => {
        flush().catch((err: unknown) => log.warn({ err }, 'writing model deltas failed'));
      }, DELTA_FLUSH_MS);
      // Heartbeats carry cancellation to this activity even while the model is silent.
      const heartbeatTimer = setInterval(() => ctx.heartbeat(), HEARTBEAT_MS);

      try {
        log.debug({ model: resolved.qualified }, 'calling model');
        const response = await resolved.provider.complete(
          {
            model: resolved.model,
            system,
            messages: input.messages,
            tools,
            maxTokens: deps.maxTokens ?? 8192,
            ...(input.taskAttempt !== undefined ? { meta: { taskAttempt: input.taskAttempt } } : {}),
          },
          {
            signal: ctx.cancellationSignal,
            onTextDelta: (text) => {
              buffer += text;
            },
          },
        );
        await flush();
        const parsed = ModelResponse.safeParse(response);
        if (!parsed.success) {
          throw new TroupeError('model_output_invalid', `model returned an invalid response: ${parsed.error.message}`);
        }
        log.info({ model: parsed.data.model, stopReason: parsed.data.stopReason, usage: parsed.data.usage }, 'model call finished');
        return parsed.data;
      } catch (err) {
        if (ctx.cancellationSignal.aborted) {
          log.info('model call cancelled');
          throw ctx.cancellationSignal.reason ?? err;
        }
        log.warn({ err: err instanceof Error ? { message: err.message, code: (err as TroupeError).code } : err }, 'model call failed');
        throw toFailure(err);
      } finally {
        clearInterval(flushTimer);
        clearInterval(heartbeatTimer);
        await flushing.catch(() => undefined);
      }
    },

    /**
     * Runs one tool call. Bad input from the model (unknown tool, arguments that fail validation) is returned
     * to the model as an error result naming what is wrong, so it can correct itself.
     */
    /** Creates (or finds again: idempotent) the worktree a session or task works in, and records it on the session. */
    async prepareWorkspace(input: PrepareWorkspaceInput): Promise<Workspace> {
      try {
        const ws = await createWorkspace({ repo: input.repo, workspaceId: input.workspaceId, baseDir: deps.workspacesDir, ...(input.baseRef ? { baseRef: input.baseRef } : {}) });
        if (input.workspaceId === input.sessionId) {
          await db.session.updateMany({ where: { id: input.sessionId }, data: { workspace: ws as unknown as object } });
        }
        return ws;
      } catch (err) {
        if (err instanceof TroupeError) throw ApplicationFailure.create({ type: err.code, message: err.message, nonRetryable: true });
        throw err;
      }
    },

    /** Restores a session's worktree to one of its snapshots (rollback) and traces it. */
    async restoreWorkspace(input: { sessionId: string; workspace: Workspace; sha: string; by: string; key: string }): Promise<{ sha: string }> {
      try {
        const restored = await restore(input.workspace, input.sha);
        await appendTraceEvents(db, input.sessionId, [
          {
            key: input.key,
            runId: Context.current().info.workflowExecution?.runId ?? 'unknown',
            actor: `user:${input.by}`,
            type: 'workspace.rollback',
            payload: { sha: restored.sha, branch: input.workspace.branch, by: input.by },
            timestamp: new Date().toISOString(),
          },
        ]);
        return restored;
      } catch (err) {
        if (err instanceof TroupeError) throw ApplicationFailure.create({ type: err.code, message: err.message, nonRetryable: true });
        throw err;
      }
    },

    /**
     * Runs one tool call, after the guardrails. Bad input from the model (unknown tool, arguments that fail
     * validation) is returned to the model as an error result naming what is wrong, so it can correct itself.
     * Every decision is a `guardrail.decision` trace event; deny is answered at once, ask comes back as a request
     * (the workflow files the approval and calls again with it). A call that changes the worktree is one atomic step:
     * bracketed by snapshots, restored to the pre-step snapshot when retried, never run twice once committed.
     */
    async runTool(input: RunToolInput): Promise<RunToolResult> {
      const ctx = Context.current();
      const { call, agent } = input;
      const runId = ctx.info.workflowExecution?.runId ?? 'unknown';
      const stepKey = `${input.keyPrefix ?? ''}${input.step}:${call.id}`;
      const errorResult = (content: string): ToolResultBlock => ({ type: 'tool_result', toolUseId: call.id, content, isError: true });
      const tool = parseMcpToolName(call.name)
        ? await deps.mcp?.tool(agent, call.name)
        : agent.tools.includes(call.name) ? deps.tools.get(call.name) : undefined;
      if (!tool) return errorResult(`unknown tool "${call.name}"; available: ${agent.tools.join(', ') || '(none)'}`);
      const args = tool.input.safeParse(call.input);
      if (!args.success) {
        const problems = args.error.issues.map((i) => `${i.path.join('.') || '(input)'}: ${i.message}`).join('; ');
        return errorResult(`invalid arguments for ${call.name}: ${problems}`);
      }
      const workspace: WorkspaceContext | undefined = input.workspace
        ? { root: input.workspace.root, gitCommonDir: input.workspace.gitCommonDir, ...(deps.runCommand ? { runCommand: deps.runCommand } : {}) }
        : undefined;

      // Guardrails: agent permissions first, then the policy's rules and the risk score (core/policy.ts).
      const facts = await resolveToolFacts(workspace, call.name, args.data);
      const decision = evaluate({ tool: call.name, agent: { id: agent.id, role: agent.role, permissions: agent.permissions }, ...facts }, deps.policy);
      await appendTraceEvents(db, input.sessionId, [
        {
          key: `${stepKey}:guardrail${input.approval ? ':approved' : ''}`,
          runId,
          ...(input.taskId ? { taskId: input.taskId } : {}),
          actor: 'guardrails',
          type: 'guardrail.decision',
          payload: {
            toolUseId: call.id,
            tool: call.name,
            effect: decision.effect === 'ask' && input.approval ? 'allow' : decision.effect,
            stage: decision.stage,
            ...(decision.ruleId ? { ruleId: decision.ruleId } : {}),
            reason: decision.reason,
            risk: decision.risk,
            ...(input.approval ? { approvedBy: input.approval.by, approvalId: input.approval.approvalId } : {}),
          },
          timestamp: new Date().toISOString(),
        },
      ]);
      if (decision.effect === 'deny') return errorResult(`${call.name} was not run: the guardrails deny it (${decision.reason}). Choose another way.`);
      if (decision.effect === 'ask' && !input.approval) return { ...errorResult('waiting for approval'), approvalRequest: decision };

      const toolCtx = {
        db,
        sessionId: input.sessionId,
        project: input.project ?? null,
        agent,
        agentId: agent.id,
        taskId: input.taskId ?? null,
        runId,
        callKey: stepKey,
        signal: ctx.cancellationSignal,
        ...(workspace ? { workspace } : {}),
      };
      const redact = (text: string) => redactString(text, deps.secrets ?? []);
      const heartbeatTimer = setInterval(() => ctx.heartbeat(), HEARTBEAT_MS);
      try {
        const mutates = CODING_TOOL_META[call.name]?.mutates === true && input.workspace !== undefined;
        if (!mutates) return { type: 'tool_result', toolUseId: call.id, ...(await runGuarded(() => tool.run(toolCtx, args.data))) };

        const ws = input.workspace!;
        const begin = await beginStep(ws, { stepKey, retry: ctx.info.attempt > 1 });
        if (begin.alreadyDone) {
          // The step finished before a crash: its snapshot holds the result; never run it twice.
          return { type: 'tool_result', toolUseId: call.id, ...(await stepResult(ws, begin.sha)) };
        }
        const result = await runGuarded(() => tool.run(toolCtx, args.data));
        const end = await endStep(ws, { stepKey, message: `${call.name} (${stepKey})\n\n${STEP_RESULT_MARK}${JSON.stringify(result).slice(0, 60_000)}` });
        if (end.changed) {
          await appendTraceEvents(db, input.sessionId, [
            {
              key: `${stepKey}:snapshot`,
              runId,
              ...(input.taskId ? { taskId: input.taskId } : {}),
              actor: 'workspace',
              type: 'workspace.snapshot',
              payload: { sha: end.sha, step: stepKey, tool: call.name, toolUseId: call.id, branch: ws.branch },
              timestamp: new Date().toISOString(),
            },
          ]);
        }
        return { type: 'tool_result', toolUseId: call.id, ...result };
      } finally {
        clearInterval(heartbeatTimer);
      }

      /** Runs the tool; a refusal (bad_request) is an answer for the model, not a failure to retry. Output is redacted. */
      async function runGuarded(run: () => Promise<string>): Promise<{ content: string; isError?: true }> {
        try {
          return { content: redact(await run()) };
        } catch (err) {
          if (err instanceof TroupeError && err.code === 'bad_request') return { content: redact(err.message), isError: true };
          throw err;
        }
      }
    },
  };
}

const STEP_RESULT_MARK = 'Troupe-Result: ';

/** The result a committed step recorded in its snapshot's message. */
async function stepResult(ws: Workspace, sha: string): Promise<{ content: string; isError?: true }> {
  const log = await git(['log', '-1', '--format=%B', sha], { cwd: ws.root });
  const line = log.stdout.split('\n').find((l) => l.startsWith(STEP_RESULT_MARK));
  if (!line) return { content: 'the step had already completed (its result was not recorded)' };
  try {
    return JSON.parse(line.slice(STEP_RESULT_MARK.length)) as { content: string; isError?: true };
  } catch {
    return { content: 'the step had already completed (its recorded result was cut short)' };
  }
}

export type Activities = ReturnType<typeof createActivities>;
