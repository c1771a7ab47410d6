import { z } from 'zod';
import { AgentDefinition, ApprovalView, BlackboardEntry, DecideApprovalBody, RollbackBody, CreateSessionBody, ErrorBody, SendMessageBody, Session, SessionPage, TaskTree, TaskView, TraceEvent, VersionedAgent, WriteBlackboardBody } from '../core/schemas';
import { BlackboardQuery } from './blackboard';

const AgentView = VersionedAgent.extend({ source: z.string().describe('builtin, yaml:<file> or api'), createdAt: z.string(), updatedAt: z.string() });
const AgentVersionView = VersionedAgent.extend({ source: z.string(), createdAt: z.string() });
const AgentList = z.object({ data: z.array(AgentView) });
const AgentVersionList = z.object({ data: z.array(AgentVersionView) });
const AgentApplyResults = z.object({
  data: z.array(z.object({ change: z.enum(['created', 'updated', 'unchanged']), agent: AgentView })),
});

/** OpenAPI 3.1 document generated from the same zod schemas that validate requests. */
export function openApiDocument(): Record<string, unknown> {
  const schema = (s: z.ZodType) => {
    const out = z.toJSONSchema(s, { io: 'input', unrepresentable: 'any' }) as Record<string, unknown>;
    delete out.$schema;
    return out;
  };
  const ref = (name: string) => ({ $ref: `#/components/schemas/${name}` });
  const json = (name: string) => ({ content: { 'application/json': { schema: ref(name) } } });
  const errors = {
    '400': { description: 'invalid input; details name the bad fields', ...json('Error') },
    '401': { description: 'missing or invalid bearer token', ...json('Error') },
    '404': { description: 'unknown id', ...json('Error') },
    '409': { description: 'the session has ended', ...json('Error') },
  };
  const idParam = [{ name: 'id', in: 'path', required: true, schema: { type: 'string' } }];
  return {
    openapi: '3.1.0',
    info: { title: 'Troupe API', version: '0.1.0', description: 'Durable multi-agent sessions on Temporal.' },
    components: {
      securitySchemes: { bearer: { type: 'http', scheme: 'bearer' } },
      schemas: {
        Session: schema(Session),
        SessionPage: schema(SessionPage),
        CreateSessionBody: schema(CreateSessionBody),
        SendMessageBody: schema(SendMessageBody),
        TraceEvent: schema(TraceEvent),
        BlackboardEntry: schema(BlackboardEntry),
        BlackboardList: schema(z.object({ data: z.array(BlackboardEntry) })),
        WriteBlackboardBody: schema(WriteBlackboardBody),
        AgentDefinition: schema(AgentDefinition),
        AgentUpdateBody: schema(AgentDefinition.partial({ id: true })),
        Agent: schema(AgentView),
        AgentVersion: schema(AgentVersionView),
        AgentList: schema(AgentList),
        AgentVersionList: schema(AgentVersionList),
        AgentApplyResults: schema(AgentApplyResults),
        Task: schema(TaskView),
        Approval: schema(ApprovalView),
        ApprovalList: schema(z.object({ data: z.array(ApprovalView) })),
        DecideApprovalBody: schema(DecideApprovalBody),
        RollbackBody: schema(RollbackBody),
        TaskTree: schema(TaskTree),
        Error: schema(ErrorBody),
      },
    },
    security: [{ bearer: [] }],
    paths: {
      '/v1/sessions': {
        post: {
          summary: 'Start a session',
          requestBody: { required: true, ...json('CreateSessionBody') },
          responses: { '201': { description: 'the new session', ...json('Session') }, ...errors },
        },
        get: {
          summary: 'List sessions, newest first',
          parameters: [
            { name: 'limit', in: 'query', schema: { type: 'integer', minimum: 1, maximum: 200, default: 50 } },
            { name: 'cursor', in: 'query', schema: { type: 'string' } },
            { name: 'status', in: 'query', schema: { type: 'string' } },
          ],
          responses: { '200': { description: 'a page of sessions', ...json('SessionPage') }, ...errors },
        },
      },
      '/v1/sessions/{id}': {
        get: { summary: 'Get a session', parameters: idParam, responses: { '200': { description: 'the session', ...json('Session') }, ...errors } },
      },
      '/v1/sessions/{id}/events': {
        get: {
          summary: 'Stream the session trace (Server-Sent Events; `id:` is the seq; resumes after Last-Event-ID or ?after=)',
          parameters: [...idParam, { name: 'after', in: 'query', schema: { type: 'integer', minimum: 0 } }, { name: 'Last-Event-ID', in: 'header', schema: { type: 'integer' } }],
          responses: { '200': { description: 'text/event-stream of TraceEvent', content: { 'text/event-stream': { schema: ref('TraceEvent') } } }, ...errors },
        },
      },
      '/v1/sessions/{id}/messages': {
        post: {
          summary: 'Send the next user message (resumes a session waiting for input)',
          parameters: idParam,
          requestBody: { required: true, ...json('SendMessageBody') },
          responses: { '202': { description: 'accepted', ...json('Session') }, ...errors },
        },
      },
      '/v1/sessions/{id}/cancel': {
        post: { summary: 'Cancel a session and its in-flight work', parameters: idParam, responses: { '202': { description: 'cancel requested', ...json('Session') }, ...errors } },
      },
      '/v1/sessions/{id}/close': {
        post: { summary: 'End a session normally (status done)', parameters: idParam, responses: { '202': { description: 'close requested', ...json('Session') }, ...errors } },
      },
      '/v1/sessions/{id}/tasks': {
        get: {
          summary: 'The task tree of a session: one root per round (the planner\'s), its planned tasks as children',
          parameters: idParam,
          responses: { '200': { description: 'the tree', ...json('TaskTree') }, ...errors },
        },
      },
      '/v1/sessions/{id}/rollback': {
        post: {
          summary: "Restore the session's worktree to one of its snapshots (only while it waits for input)",
          parameters: idParam,
          requestBody: { required: true, ...json('RollbackBody') },
          responses: { '200': { description: 'restored: `{ sha }`' }, ...errors },
        },
      },
      '/v1/sessions/{id}/approvals': {
        get: {
          summary: "Guardrail approvals of the session and its tasks (oldest first); `?status=pending` for the open ones",
          parameters: [...idParam, { name: 'status', in: 'query', schema: { type: 'string' } }],
          responses: { '200': { description: 'the approvals', ...json('ApprovalList') }, ...errors },
        },
      },
      '/v1/approvals/{id}': {
        get: { summary: 'One approval', parameters: idParam, responses: { '200': { description: 'the approval', ...json('Approval') }, ...errors } },
        post: {
          summary: 'Approve or deny (409 when already decided or expired)',
          parameters: idParam,
          requestBody: { required: true, ...json('DecideApprovalBody') },
          responses: { '200': { description: 'the decision', ...json('Approval') }, ...errors },
        },
      },
      '/v1/tasks/{id}': {
        get: { summary: 'One task with its artifacts', parameters: idParam, responses: { '200': { description: 'the task', ...json('Task') }, ...errors } },
      },
      '/v1/sessions/{id}/blackboard': {
        get: {
          summary:
            'Blackboard entries visible in the session: its own, its project\'s and the global ones (latest value per scope and key, unexpired, oldest first, at most 500)',
          parameters: [
            ...idParam,
            ...Object.entries((schema(BlackboardQuery).properties ?? {}) as Record<string, unknown>).map(([name, s]) => ({ name, in: 'query', schema: s })),
          ],
          responses: { '200': { description: 'the entries', ...json('BlackboardList') }, ...errors },
        },
        post: {
          summary: 'Write a blackboard entry as actor `app` (recorded as a `blackboard.written` trace event)',
          parameters: [
            ...idParam,
            {
              name: 'Idempotency-Key',
              in: 'header',
              description: 'makes the write safe to retry: the same key returns the same entry (1-200 characters of A-Z a-z 0-9 _ . : -)',
              schema: { type: 'string', pattern: '^[A-Za-z0-9_.:-]{1,200}$' },
            },
          ],
          requestBody: { required: true, ...json('WriteBlackboardBody') },
          responses: {
            '201': { description: 'the entry', ...json('BlackboardEntry') },
            ...errors,
            '409': { description: 'the session has ended, or the Idempotency-Key was used for a different write', ...json('Error') },
          },
        },
      },
      '/v1/agents': {
        get: { summary: 'List the current agents (deleted ones left out), by id', responses: { '200': { description: 'the agents', ...json('AgentList') }, ...errors } },
        post: {
          summary:
            'Create an agent (JSON: one definition → 201; 409 if it exists). With Content-Type application/yaml (or text/yaml): ' +
            'one agent or a YAML list, applied all or nothing: created, updated (new version) or unchanged → 200',
          requestBody: {
            required: true,
            content: {
              'application/json': { schema: ref('AgentDefinition') },
              'application/yaml': { schema: { type: 'string', description: 'one AgentDefinition or a list of them, as YAML' } },
            },
          },
          responses: {
            '201': { description: 'the new agent (version 1, or the next version of a deleted one)', ...json('Agent') },
            '200': { description: 'YAML body: what happened to each agent', ...json('AgentApplyResults') },
            ...errors,
            '409': { description: 'an agent with this id exists', ...json('Error') },
          },
        },
      },
      '/v1/agents/{id}': {
        get: {
          summary: 'Get the current version of an agent, or an older one with ?version=N (versions of deleted agents stay readable)',
          parameters: [...idParam, { name: 'version', in: 'query', schema: { type: 'integer', minimum: 1 } }],
          responses: { '200': { description: 'the agent', ...json('Agent') }, ...errors },
        },
        put: {
          summary: 'Save a new version of an agent (creates it when missing); an identical definition keeps the version',
          parameters: idParam,
          requestBody: { required: true, ...json('AgentUpdateBody') },
          responses: { '200': { description: 'the current version', ...json('Agent') }, ...errors },
        },
        delete: {
          summary: 'Delete an agent (soft: its versions stay for the sessions that use them; re-creating it continues the numbering)',
          parameters: idParam,
          responses: { '204': { description: 'deleted' }, ...errors },
        },
      },
      '/v1/agents/{id}/versions': {
        get: { summary: 'Every version of an agent, newest first', parameters: idParam, responses: { '200': { description: 'the versions', ...json('AgentVersionList') }, ...errors } },
      },
      '/healthz': { get: { summary: 'Liveness', security: [], responses: { '200': { description: 'ok' } } } },
      '/readyz': { get: { summary: 'Temporal and Postgres reachable', security: [], responses: { '200': { description: 'ready' }, '503': { description: 'not ready' } } } },
    },
  };
}
