import express, { type Router } from 'express';
import type { TaskService } from '../service/tasks';

/** `GET /v1/sessions/:id/tasks` (the tree) and `GET /v1/tasks/:id` (one task with its artifacts). */
export function tasksRouter(tasks: TaskService): Router {
  const router = express.Router();
  router.get('/sessions/:id/tasks', async (req, res) => {
    res.json({ data: await tasks.tree(String(req.params.id)) });
  });
  router.get('/tasks/:id', async (req, res) => {
    res.json(await tasks.get(String(req.params.id)));
  });
  return router;
}
