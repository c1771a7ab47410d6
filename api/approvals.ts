import express, { type Router } from 'express';
import { DecideApprovalBody, ListApprovalsQuery } from '../core/schemas';
import type { ApprovalService } from '../service/approvals';
import { parseOr400 } from './errors';

/** `GET /v1/sessions/:id/approvals`, `GET /v1/approvals/:id`, `POST /v1/approvals/:id` `{ decision, reason?, by? }`. */
export function approvalsRouter(approvals: ApprovalService): Router {
  const router = express.Router();
  router.get('/sessions/:id/approvals', async (req, res) => {
    const query = parseOr400(ListApprovalsQuery, req.query, 'query');
    res.json({ data: await approvals.list(String(req.params.id), query.status) });
  });
  router.get('/approvals/:id', async (req, res) => {
    res.json(await approvals.get(String(req.params.id)));
  });
  router.post('/approvals/:id', async (req, res) => {
    const body = parseOr400(DecideApprovalBody, req.body, 'body');
    res.json(await approvals.decide(String(req.params.id), body));
  });
  return router;
}
