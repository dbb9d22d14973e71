/**
 * A small XML reader for the Blob service's response bodies (List Blobs, Get Block List): elements,
 * attributes, text with the predefined and numeric entities, CDATA; comments, processing
 * instructions and the doctype are skipped. It builds a tree, and refuses malformed input instead
 * of guessing (a garbled listing must become `bad_gateway`, never a wrong page).
 */
import { CloudmuxError } from '@cloudmux/core';

export interface XmlElement {
  name: string;
  attributes: Record<string, string>;
  children: XmlElement[];
  text: string;
}

const ENTITIES: Record<string, string> = { lt: '<', gt: '>', amp: '&', quot: '"', apos: "'" };

function malformed(detail: string): CloudmuxError {
  return new CloudmuxError('bad_gateway', `azure returned malformed XML (${detail}).`, {
    service: 'azure',
    upstream: { service: 'azure', code: 'MalformedXml' },
  });
}

function decodeEntities(text: string): string {
  if (!text.includes('&')) return text;
  return text.replace(/&(#x[0-9a-fA-F]+|#[0-9]+|[a-z]+);?/g, (whole, ref: string) => {
    if (!whole.endsWith(';')) throw malformed('entity without ";"');
    if (ref.startsWith('#')) {
      const code = ref[1] === 'x' ? Number.parseInt(ref.slice(2), 16) : Number.parseInt(ref.slice(1), 10);
      if (!Number.isFinite(code) || code > 0x10ffff) throw malformed(`bad character reference ${whole}`);
      return String.fromCodePoint(code);
    }
    const value = ENTITIES[ref];
    if (value === undefined) throw malformed(`unknown entity ${whole}`);
    return value;
  });
}

const NAME = /[A-Za-z_:][-A-Za-z0-9_:.]*/y;
const ATTRIBUTE = /\s*([A-Za-z_:][-A-Za-z0-9_:.]*)\s*=\s*(?:"([^"]*)"|'([^']*)')/y;

export function parseXml(input: string): XmlElement {
  const root: XmlElement = { name: '#document', attributes: {}, children: [], text: '' };
  const stack: XmlElement[] = [root];
  let i = input.charCodeAt(0) === 0xfeff ? 1 : 0;
  while (i < input.length) {
    const lt = input.indexOf('<', i);
    const textEnd = lt < 0 ? input.length : lt;
    if (textEnd > i) {
      const text = input.slice(i, textEnd);
      const top = stack[stack.length - 1]!;
      if (top === root) {
        if (text.trim() !== '') throw malformed('text outside the root element');
      } else top.text += decodeEntities(text);
    }
    if (lt < 0) break;
    if (input.startsWith('<?', lt)) {
      const end = input.indexOf('?>', lt + 2);
      if (end < 0) throw malformed('unterminated processing instruction');
      i = end + 2;
    } else if (input.startsWith('<!--', lt)) {
      const end = input.indexOf('-->', lt + 4);
      if (end < 0) throw malformed('unterminated comment');
      i = end + 3;
    } else if (input.startsWith('<![CDATA[', lt)) {
      const end = input.indexOf(']]>', lt + 9);
      if (end < 0) throw malformed('unterminated CDATA');
      const top = stack[stack.length - 1]!;
      if (top === root) throw malformed('CDATA outside the root element');
      top.text += input.slice(lt + 9, end);
      i = end + 3;
    } else if (input.startsWith('<!', lt)) {
      // DOCTYPE: no internal subsets in Azure replies; skip to the closing bracket.
      const end = input.indexOf('>', lt + 2);
      if (end < 0) throw malformed('unterminated declaration');
      i = end + 1;
    } else if (input.startsWith('</', lt)) {
      NAME.lastIndex = lt + 2;
      const m = NAME.exec(input);
      if (!m) throw malformed('bad closing tag');
      const end = input.indexOf('>', NAME.lastIndex);
      if (end < 0 || input.slice(NAME.lastIndex, end).trim() !== '') throw malformed('bad closing tag');
      const top = stack.pop();
      if (!top || top === root || top.name !== m[0]) throw malformed(`unexpected </${m[0]}>`);
      i = end + 1;
    } else {
      NAME.lastIndex = lt + 1;
      const m = NAME.exec(input);
      if (!m) throw malformed('bad opening tag');
      const element: XmlElement = { name: m[0], attributes: {}, children: [], text: '' };
      let j = NAME.lastIndex;
      for (;;) {
        ATTRIBUTE.lastIndex = j;
        const a = ATTRIBUTE.exec(input);
        if (!a) break;
        element.attributes[a[1]!] = decodeEntities(a[2] ?? a[3] ?? '');
        j = ATTRIBUTE.lastIndex;
      }
      while (j < input.length && /\s/.test(input[j]!)) j++;
      const parent = stack[stack.length - 1]!;
      if (parent === root && root.children.length > 0) throw malformed('more than one root element');
      parent.children.push(element);
      if (input.startsWith('/>', j)) i = j + 2;
      else if (input[j] === '>') {
        stack.push(element);
        i = j + 1;
      } else throw malformed(`bad tag <${m[0]}>`);
    }
  }
  if (stack.length !== 1) throw malformed(`unclosed <${stack[stack.length - 1]!.name}>`);
  const doc = root.children[0];
  if (!doc) throw malformed('no root element');
  return doc;
}

export function child(element: XmlElement | undefined, name: string): XmlElement | undefined {
  return element?.children.find((c) => c.name === name);
}

export function children(element: XmlElement | undefined, name: string): XmlElement[] {
  return element ? element.children.filter((c) => c.name === name) : [];
}

export function childText(element: XmlElement | undefined, name: string): string | undefined {
  return child(element, name)?.text;
}

export function escapeXml(text: string): string {
  return text.replace(/[<>&"']/g, (c) => `&${Object.entries(ENTITIES).find(([, v]) => v === c)![0]};`);
}
