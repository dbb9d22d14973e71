/** `GET /accounts/{id}/tasks/{task_id}`: the running task, then the finished request's own response. */
import { CloudmuxError } from '@cloudmux/core';
import type { FastifyInstance } from 'fastify';
import type { ServerDeps } from '../http/deps.js';
import { accountsOf } from '../http/scope.js';
import { renderTask } from '../tasks.js';
import { sendJson } from './util.js';

export function registerTasksRoutes(app: FastifyInstance, deps: ServerDeps): void {
  app.get('/v1/accounts/:account/tasks/:task', async (request, reply) => {
    const { principal, accounts } = await accountsOf(deps, request, reply);
    if (accounts.length !== 1)
      throw new CloudmuxError('invalid_parameters', 'This endpoint takes a single account id.');
    const id = (request.params as { task: string }).task;
    const task = /^[0-9a-f-]{36}$/.test(id)
      ? await deps.tasks.get(principal.app.id, Number(accounts[0]!.id), id)
      : undefined;
    if (!task) throw new CloudmuxError('not_found', 'Task not found.');
    if (!task.result) return sendJson(reply, 200, renderTask(task));
    // Finished: the result object itself (or its error envelope), as the synchronous request would have answered.
    if (task.result.status >= 400) return sendJson(reply, task.result.status, task.result.body);
    // A finished delete has no object to show: report the task as done.
    if (task.result.body === null)
      return sendJson(reply, 200, {
        id: task.id,
        status: 'SUCCESS',
        account: task.accountId,
        api: 'core',
        type: 'task',
      });
    return sendJson(reply, 200, task.result.body);
  });
}
