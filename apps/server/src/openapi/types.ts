/**
 * The route table the OpenAPI document is built from: one entry per route Fastify serves (a test
 * compares the two in both directions, so the document cannot drift from the server).
 */
import type { AnyConnectorDefinition, ErrorCode } from '@cloudmux/core';
import type * as z from 'zod';

export type HttpMethod = 'GET' | 'POST' | 'PUT' | 'PATCH' | 'DELETE';

/**
 * Who may call: nobody needs to authenticate (`none`), the application API key only (`api_key`),
 * the API key or an account bearer token (`account`), or a bearer token that the route checks
 * itself and answers 400 for (`bearer`, token verification).
 */
export type RouteAuth = 'none' | 'api_key' | 'account' | 'bearer';

/** Request headers documented once in `components.parameters`. */
export type HeaderParam =
  | 'RawData'
  | 'RawHeaders'
  | 'AsUser'
  | 'Metadata'
  | 'Range'
  | 'RawUri'
  | 'RawMethod'
  | 'Async';

/** What the document builder knows about the server it describes. */
export interface DocContext {
  connectors: readonly AnyConnectorDefinition[];
}

type SchemaSource = z.ZodType | ((context: DocContext) => z.ZodType);

export interface RequestBodyDoc {
  description?: string;
  required?: boolean;
  /** `application/json` body. */
  json?: SchemaSource;
  /** Raw bytes (any media type), streamed. */
  binary?: string;
  /** `application/x-www-form-urlencoded` body. */
  form?: SchemaSource;
}

export interface ResponseDoc {
  description: string;
  json?: SchemaSource;
  /** Raw bytes; the value describes them. */
  binary?: string;
  /** `text/html` page. */
  html?: string;
  /** `text/plain` (Prometheus exposition, …). */
  text?: string;
  /** Response headers documented in `components.headers`. */
  headers?: Array<'ContentRange' | 'ContentDisposition' | 'AcceptRanges'>;
}

export interface RouteDoc {
  method: HttpMethod;
  /** Fastify path pattern, e.g. `/v1/accounts/:account/storage/files/:id`. */
  path: string;
  operationId: string;
  tag: string;
  summary: string;
  description?: string;
  auth: RouteAuth;
  /** Descriptions of path parameters other than the shared ones (`account`, `token`). */
  params?: Record<string, string>;
  /** Query parameters: each key of the object is one parameter. */
  query?: z.ZodObject;
  headers?: HeaderParam[];
  body?: RequestBodyDoc;
  responses: Record<number, ResponseDoc>;
  /** Errors this route answers with, besides the ones its `auth` implies and `internal_error`. */
  errors?: ErrorCode[];
}
