/**
 * The delivery body and its signature (kloudless-api.md §2.4 "Webhooks (delivery side)").
 *
 * Kloudless posted a form-urlencoded body that starts with `account=<id>`; receivers written for
 * the storage API read `account` and then fetch `events?cursor=…`, and the Meeting Scheduler's
 * documented body adds `event_category`, `event_type` and ids of the objects concerned. We send
 * `account`, `event_category`, `event_type`, `event_id`, `object_id`, `object_type` and `modified`,
 * in that order, so both kinds of receiver find what they read.
 */
import { createHmac } from 'node:crypto';
import { type IdCodec, toKloudlessTime } from '@cloudmux/core';
import type { JournalEvent } from '../journal.js';

export interface WebhookFields {
  account: string;
  event_category: string;
  event_type: string;
  event_id: string;
  object_id: string;
  object_type: string;
  modified: string;
}

/** The form fields for one journal event; object ids are the account's opaque Kloudless ids. */
export function webhookFields(event: JournalEvent, service: string, ids: IdCodec): WebhookFields {
  return {
    account: String(event.accountId),
    event_category: 'storage',
    event_type: event.action,
    // The journal id is the events cursor: `events?cursor=<event_id - 1>` starts at this event.
    event_id: String(event.id),
    object_id: ids.encode({ accountId: event.accountId, service, type: event.itemType, rawId: event.rawId }),
    object_type: event.itemType,
    modified: toKloudlessTime(new Date(event.modified)) ?? event.modified,
  };
}

/** `application/x-www-form-urlencoded` serialization (WHATWG URL Standard §5.2), fields in order. */
export function encodeForm(fields: WebhookFields | Record<string, string>): string {
  return new URLSearchParams(Object.entries(fields)).toString();
}

/** `X-Kloudless-Signature`: base64 HMAC-SHA256 of the raw body bytes, keyed with the signing key. */
export function signBody(body: string | Buffer, key: string): string {
  return createHmac('sha256', key).update(body).digest('base64');
}
