import type { FastifyReply } from 'fastify';

/** JSON replies carry `Content-Type: application/json` exactly (the SDKs compare the whole value). */
export function sendJson(reply: FastifyReply, status: number, body: unknown): FastifyReply {
  return reply.status(status).header('content-type', 'application/json').send(JSON.stringify(body));
}
