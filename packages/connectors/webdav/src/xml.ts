/**
 * RFC 4918 §14.16 `DAV:multistatus` parsing. Servers differ in prefixes (`D:`, `d:`, `lp1:`, none
 * with a default namespace), so elements are matched by resolved namespace URI + local name, never by
 * prefix. fast-xml-parser does the tokenizing; namespaces are resolved here over its ordered output.
 * Documents with a DOCTYPE are refused (no entity expansion from an upstream).
 */
import { CloudmuxError, redactUpstreamBody } from '@cloudmux/core';
import { XMLParser, XMLValidator } from 'fast-xml-parser';
import { SERVICE } from './paths.js';

export const DAV_NS = 'DAV:';

export interface XmlElement {
  ns: string;
  local: string;
  children: XmlElement[];
  /** Concatenated text content of this element itself (not of its children). */
  text: string;
}

export interface DavResponse {
  href: string;
  /** `DAV:status` of the response itself (members without a propstat, e.g. 404 or 423), if any. */
  status: number | null;
  /** Properties from 2xx propstats, keyed `namespace + local name` (e.g. `DAV:getetag`). */
  props: Map<string, XmlElement>;
  /** The resource exists: a 2xx propstat, or a 2xx response status. */
  found: boolean;
}

const parser = new XMLParser({
  preserveOrder: true,
  ignoreAttributes: false,
  attributeNamePrefix: '',
  parseTagValue: false,
  parseAttributeValue: false,
  trimValues: false,
  processEntities: true,
  htmlEntities: false,
  ignoreDeclaration: true,
  ignorePiTags: true,
});

function garbage(detail: string, body?: string): CloudmuxError {
  return new CloudmuxError(
    'bad_gateway',
    `The WebDAV server sent an invalid multistatus reply (${detail}).`,
    {
      service: SERVICE,
      upstream: {
        service: SERVICE,
        code: 'DAV_BAD_XML',
        ...(body ? { body: redactUpstreamBody(body, 512) } : {}),
      },
    },
  );
}

type OrderedNode = Record<string, unknown>;

function build(nodes: unknown[], scope: Map<string, string>): XmlElement[] {
  const out: XmlElement[] = [];
  for (const node of nodes) {
    if (!node || typeof node !== 'object') continue;
    const entry = node as OrderedNode;
    const tag = Object.keys(entry).find((k) => k !== ':@' && k !== '#text');
    if (tag === undefined) continue;
    const attrs = (entry[':@'] ?? {}) as Record<string, string>;
    let inner = scope;
    for (const [name, value] of Object.entries(attrs)) {
      if (name === 'xmlns' || name.startsWith('xmlns:')) {
        if (inner === scope) inner = new Map(scope);
        inner.set(name === 'xmlns' ? '' : name.slice(6), String(value));
      }
    }
    const colon = tag.indexOf(':');
    const prefix = colon === -1 ? '' : tag.slice(0, colon);
    const local = colon === -1 ? tag : tag.slice(colon + 1);
    const ns = inner.get(prefix);
    if (ns === undefined && prefix !== '') throw garbage(`undeclared namespace prefix "${prefix}"`);
    const content = Array.isArray(entry[tag]) ? (entry[tag] as unknown[]) : [];
    let text = '';
    for (const child of content) {
      const t = (child as OrderedNode | null)?.['#text'];
      if (typeof t === 'string' || typeof t === 'number') text += String(t);
    }
    out.push({ ns: ns ?? '', local, children: build(content, inner), text });
  }
  return out;
}

/** Parses an XML document into namespace-resolved elements (the root element returned). */
export function parseXml(body: string): XmlElement {
  if (/<!DOCTYPE|<!ENTITY/i.test(body)) throw garbage('a DOCTYPE is not accepted', body);
  const valid = XMLValidator.validate(body);
  if (valid !== true) throw garbage(`not well-formed XML: ${valid.err.msg}`, body);
  let ordered: unknown;
  try {
    ordered = parser.parse(body);
  } catch (err) {
    throw garbage(`not parseable: ${(err as Error).message}`, body);
  }
  const roots = build(
    Array.isArray(ordered) ? ordered : [],
    new Map([['xml', 'http://www.w3.org/XML/1998/namespace']]),
  );
  if (roots.length !== 1) throw garbage('no single root element', body);
  return roots[0]!;
}

export function child(element: XmlElement, ns: string, local: string): XmlElement | undefined {
  return element.children.find((c) => c.ns === ns && c.local === local);
}

export function children(element: XmlElement, ns: string, local: string): XmlElement[] {
  return element.children.filter((c) => c.ns === ns && c.local === local);
}

/** `HTTP/1.1 404 Not Found` → 404 (RFC 4918 §14.28 status). */
export function parseStatusLine(line: string | undefined): number | null {
  if (line === undefined) return null;
  const match = /^\s*HTTP\/\d+(?:\.\d+)?\s+(\d{3})\b/i.exec(line);
  return match ? Number(match[1]) : null;
}

/** RFC 4918 §14.16: every `DAV:response` with its href, own status and 2xx properties. */
export function parseMultistatus(body: string): DavResponse[] {
  const root = parseXml(body);
  if (root.ns !== DAV_NS || root.local !== 'multistatus')
    throw garbage(`root element is ${root.local}`, body);
  const responses: DavResponse[] = [];
  for (const response of children(root, DAV_NS, 'response')) {
    // §14.24: one or more hrefs; with propstat there is exactly one.
    const hrefs = children(response, DAV_NS, 'href');
    if (hrefs.length === 0) continue;
    const status = parseStatusLine(child(response, DAV_NS, 'status')?.text);
    const props = new Map<string, XmlElement>();
    let found = status !== null && status >= 200 && status < 300;
    for (const propstat of children(response, DAV_NS, 'propstat')) {
      const code = parseStatusLine(child(propstat, DAV_NS, 'status')?.text);
      if (code === null || code < 200 || code > 299) continue;
      found = true;
      const prop = child(propstat, DAV_NS, 'prop');
      for (const p of prop?.children ?? []) props.set(`${p.ns}${p.local}`, p);
    }
    for (const href of hrefs) responses.push({ href: href.text.trim(), status, props, found });
  }
  return responses;
}

export function propText(response: DavResponse, local: string, ns = DAV_NS): string | undefined {
  const element = response.props.get(`${ns}${local}`);
  if (!element) return undefined;
  const text = element.text.trim();
  return text === '' ? undefined : text;
}

/** RFC 4918 §15.9 resourcetype contains `DAV:collection`. */
export function isCollection(response: DavResponse): boolean {
  const type = response.props.get(`${DAV_NS}resourcetype`);
  return type !== undefined && child(type, DAV_NS, 'collection') !== undefined;
}

/** The PROPFIND body: the live properties we read (RFC 4918 §9.1, §15). */
export const PROPFIND_BODY =
  '<?xml version="1.0" encoding="utf-8"?>\n' +
  '<D:propfind xmlns:D="DAV:"><D:prop>' +
  '<D:resourcetype/><D:getcontentlength/><D:getlastmodified/><D:creationdate/>' +
  '<D:getcontenttype/><D:getetag/>' +
  '</D:prop></D:propfind>';
