import express, { type Request, type Router } from 'express';
import { z } from 'zod';
import { TroupeError } from '../core/errors';
import { parseAgentYaml } from '../lib/agent-files';
import type { AgentService } from '../service/agents';
import { parseOr400 } from './errors';

/** Content types of a YAML body (`POST /v1/agents` applies one agent or a list of them). */
export const YAML_TYPES = ['application/yaml', 'application/x-yaml', 'text/yaml', 'text/x-yaml'];

export const AgentVersionQuery = z.object({ version: z.coerce.number().int().positive().optional() }).strict();

/** `/agents` routes of the v1 API (mounted behind the bearer-token check). */
export function agentsRouter(agents: AgentService): Router {
  const router = express.Router();
  const agentId = (req: Request) => String(req.params.id);

  router.get('/agents', async (_req, res) => {
    res.json({ data: await agents.list() });
  });

  router.post('/agents', express.text({ type: YAML_TYPES, limit: '1mb' }), async (req, res) => {
    if (typeof req.body === 'string' && req.is(YAML_TYPES)) {
      const items = parseAgentYaml(req.body, 'body');
      if (items.length === 0) {
        throw new TroupeError('bad_request', 'the YAML body holds no agent definition', [{ path: '(body)', message: 'empty' }]);
      }
      res.json({ data: await agents.apply(items.map((i) => i.value)) });
      return;
    }
    if (req.body === undefined || req.body === null || typeof req.body !== 'object' || Array.isArray(req.body)) {
      throw new TroupeError('bad_request', 'send one agent definition as a JSON object, or YAML with Content-Type: application/yaml', [
        { path: '(body)', message: 'expected a JSON object or a YAML body' },
      ]);
    }
    res.status(201).json(await agents.create(req.body));
  });

  router.get('/agents/:id', async (req, res) => {
    const { version } = parseOr400(AgentVersionQuery, req.query, 'query');
    res.json(version === undefined ? await agents.get(agentId(req)) : await agents.getVersion(agentId(req), version));
  });

  router.get('/agents/:id/versions', async (req, res) => {
    res.json({ data: await agents.versions(agentId(req)) });
  });

  router.put('/agents/:id', async (req, res) => {
    const { agent } = await agents.update(agentId(req), req.body);
    res.json(agent);
  });

  router.delete('/agents/:id', async (req, res) => {
    await agents.remove(agentId(req));
    res.status(204).end();
  });

  return router;
}
