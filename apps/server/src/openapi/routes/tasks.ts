import { named } from '../schemas.js';
import type { RouteDoc } from '../types.js';

export const taskRoutes: RouteDoc[] = [
  {
    method: 'GET',
    path: '/v1/accounts/:account/tasks/:task',
    operationId: 'getTask',
    tag: 'Tasks',
    summary: 'Poll an asynchronous request',
    description:
      'Requests sent with `X-Kloudless-Async: true` (or `return_type=task`) answer 202 with a Task. While it runs ' +
      'this answers the Task; once finished, the response the request itself would have given (its object, or ' +
      'its error envelope with that status).',
    auth: 'account',
    params: { task: 'Task id' },
    responses: {
      200: { description: 'The running Task, or the finished request’s object.', json: named.Task },
    },
    errors: ['invalid_parameters'],
  },
];
