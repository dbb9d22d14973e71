/**
 * NTLMv2 authentication (MS-NLMP) wrapped in SPNEGO (RFC 4178), on node:crypto only. MD4 is written
 * here because OpenSSL 3 moved it to the legacy provider; nothing else needs a legacy algorithm:
 * no LM, no NTLMv1, no DES, and no RC4 (the client never sets NEGOTIATE_KEY_EXCH).
 */
import { createHmac, randomBytes } from 'node:crypto';

// ---------------------------------------------------------------------------------------------
// MD4 (RFC 1320), only for the NT one-way function of the password.

function rotl(x: number, s: number): number {
  return ((x << s) | (x >>> (32 - s))) >>> 0;
}

// RFC 1320 §3: the three rounds, message words in these orders, shifted by these amounts.
const R2_ORDER = [0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15];
const R3_ORDER = [0, 8, 4, 12, 2, 10, 6, 14, 1, 9, 5, 13, 3, 11, 7, 15];

export function md4(input: Buffer): Buffer {
  const bitLength = BigInt(input.length) * 8n;
  const padLength = (input.length % 64 < 56 ? 56 : 120) - (input.length % 64);
  const message = Buffer.alloc(input.length + padLength + 8);
  input.copy(message);
  message[input.length] = 0x80;
  message.writeBigUInt64LE(bitLength, input.length + padLength);
  let a = 0x67452301;
  let b = 0xefcdab89;
  let c = 0x98badcfe;
  let d = 0x10325476;
  const x = new Array<number>(16);
  for (let offset = 0; offset < message.length; offset += 64) {
    for (let i = 0; i < 16; i++) x[i] = message.readUInt32LE(offset + i * 4);
    const [aa, bb, cc, dd] = [a, b, c, d];
    const f = (p: number, q: number, r: number) => (p & q) | (~p & r);
    const g = (p: number, q: number, r: number) => (p & q) | (p & r) | (q & r);
    const h = (p: number, q: number, r: number) => p ^ q ^ r;
    for (let i = 0; i < 16; i++) {
      const s = [3, 7, 11, 19][i % 4]!;
      const t = rotl((a + f(b, c, d) + x[i]!) >>> 0, s);
      [a, b, c, d] = [d, t, b, c];
    }
    for (let i = 0; i < 16; i++) {
      const s = [3, 5, 9, 13][i % 4]!;
      const t = rotl((a + g(b, c, d) + x[R2_ORDER[i]!]! + 0x5a827999) >>> 0, s);
      [a, b, c, d] = [d, t, b, c];
    }
    for (let i = 0; i < 16; i++) {
      const s = [3, 9, 11, 15][i % 4]!;
      const t = rotl((a + h(b, c, d) + x[R3_ORDER[i]!]! + 0x6ed9eba1) >>> 0, s);
      [a, b, c, d] = [d, t, b, c];
    }
    a = (a + aa) >>> 0;
    b = (b + bb) >>> 0;
    c = (c + cc) >>> 0;
    d = (d + dd) >>> 0;
  }
  const out = Buffer.alloc(16);
  out.writeUInt32LE(a, 0);
  out.writeUInt32LE(b, 4);
  out.writeUInt32LE(c, 8);
  out.writeUInt32LE(d, 12);
  return out;
}

// ---------------------------------------------------------------------------------------------
// NTLM messages (MS-NLMP §2.2.1) and the NTLMv2 response (MS-NLMP §3.3.2).

const SIGNATURE = Buffer.from('NTLMSSP\0', 'latin1');

// MS-NLMP §2.2.2.5 NEGOTIATE flags.
export const NTLM_FLAGS = {
  UNICODE: 0x00000001,
  REQUEST_TARGET: 0x00000004,
  SIGN: 0x00000010,
  NTLM: 0x00000200,
  ALWAYS_SIGN: 0x00008000,
  EXTENDED_SESSIONSECURITY: 0x00080000,
  TARGET_INFO: 0x00800000,
  VERSION: 0x02000000,
  N128: 0x20000000,
  N56: 0x80000000,
} as const;

const CLIENT_FLAGS =
  (NTLM_FLAGS.UNICODE |
    NTLM_FLAGS.REQUEST_TARGET |
    NTLM_FLAGS.SIGN |
    NTLM_FLAGS.NTLM |
    NTLM_FLAGS.ALWAYS_SIGN |
    NTLM_FLAGS.EXTENDED_SESSIONSECURITY |
    NTLM_FLAGS.TARGET_INFO |
    NTLM_FLAGS.VERSION |
    NTLM_FLAGS.N128 |
    NTLM_FLAGS.N56) >>>
  0;

// MS-NLMP §2.2.2.10 VERSION: Windows 10 build numbers, NTLM revision 15, as common clients send.
const VERSION = Buffer.from([10, 0, 0x61, 0x4a, 0, 0, 0, 15]);

const MSV_AV_TIMESTAMP = 7;

function utf16(text: string): Buffer {
  return Buffer.from(text, 'utf16le');
}

/** MS-NLMP §2.2.1.1 NEGOTIATE_MESSAGE without domain or workstation. */
export function negotiateMessage(): Buffer {
  const msg = Buffer.alloc(40);
  SIGNATURE.copy(msg, 0);
  msg.writeUInt32LE(1, 8);
  msg.writeUInt32LE(CLIENT_FLAGS, 12);
  // Domain and workstation fields stay empty, their offsets point past the header.
  msg.writeUInt32LE(40, 20);
  msg.writeUInt32LE(40, 28);
  VERSION.copy(msg, 32);
  return msg;
}

export interface NtlmChallenge {
  flags: number;
  serverChallenge: Buffer;
  targetInfo: Buffer;
  /** MsvAvTimestamp from the target info, when the server sent one. */
  timestamp: Buffer | null;
}

/** MS-NLMP §2.2.1.2 CHALLENGE_MESSAGE. */
export function parseChallenge(msg: Buffer): NtlmChallenge {
  if (msg.length < 48 || !msg.subarray(0, 8).equals(SIGNATURE) || msg.readUInt32LE(8) !== 2) {
    throw new Error('not an NTLM CHALLENGE message');
  }
  const flags = msg.readUInt32LE(20);
  const serverChallenge = Buffer.from(msg.subarray(24, 32));
  const infoLength = msg.readUInt16LE(40);
  const infoOffset = msg.readUInt32LE(44);
  if (infoOffset + infoLength > msg.length) throw new Error('NTLM target info lies outside the message');
  const targetInfo = Buffer.from(msg.subarray(infoOffset, infoOffset + infoLength));
  let timestamp: Buffer | null = null;
  for (let p = 0; p + 4 <= targetInfo.length; ) {
    const id = targetInfo.readUInt16LE(p);
    const len = targetInfo.readUInt16LE(p + 2);
    if (id === 0) break;
    if (id === MSV_AV_TIMESTAMP && len === 8) timestamp = Buffer.from(targetInfo.subarray(p + 4, p + 12));
    p += 4 + len;
  }
  return { flags, serverChallenge, targetInfo, timestamp };
}

/** MS-NLMP §3.3.2 NTOWFv2. */
export function ntowfv2(password: string, user: string, domain: string): Buffer {
  const ntHash = md4(utf16(password));
  return createHmac('md5', ntHash)
    .update(utf16(user.toUpperCase() + domain))
    .digest();
}

function hmacMd5(key: Buffer, ...parts: Buffer[]): Buffer {
  const hmac = createHmac('md5', key);
  for (const part of parts) hmac.update(part);
  return hmac.digest();
}

/** 100 ns ticks since 1601-01-01, as the 8 little-endian bytes NTLM and SMB use. */
export function fileTimeNow(now = Date.now()): Buffer {
  const out = Buffer.alloc(8);
  out.writeBigUInt64LE((BigInt(now) + 11_644_473_600_000n) * 10_000n);
  return out;
}

export interface NtlmV2Result {
  ntResponse: Buffer;
  lmResponse: Buffer;
  /** SessionBaseKey; without KEY_EXCH it is also the exported session key SMB signs with. */
  sessionKey: Buffer;
}

/** MS-NLMP §3.3.2 NTLMv2 responses for one CHALLENGE. */
export function ntlmV2Response(
  challenge: NtlmChallenge,
  credentials: { user: string; password: string; domain: string },
  options: { clientChallenge?: Buffer; time?: Buffer } = {},
): NtlmV2Result {
  const key = ntowfv2(credentials.password, credentials.user, credentials.domain);
  const clientChallenge = options.clientChallenge ?? randomBytes(8);
  const time = options.time ?? challenge.timestamp ?? fileTimeNow();
  const temp = Buffer.concat([
    Buffer.from([1, 1, 0, 0, 0, 0, 0, 0]),
    time,
    clientChallenge,
    Buffer.alloc(4),
    challenge.targetInfo,
    Buffer.alloc(4),
  ]);
  const ntProof = hmacMd5(key, challenge.serverChallenge, temp);
  // With MsvAvTimestamp present the LMv2 response must be zeros (MS-NLMP §3.1.5.1.2).
  const lmResponse = challenge.timestamp
    ? Buffer.alloc(24)
    : Buffer.concat([hmacMd5(key, challenge.serverChallenge, clientChallenge), clientChallenge]);
  return { ntResponse: Buffer.concat([ntProof, temp]), lmResponse, sessionKey: hmacMd5(key, ntProof) };
}

/** MS-NLMP §2.2.1.3 AUTHENTICATE_MESSAGE (with VERSION, without MIC). */
export function authenticateMessage(
  challenge: NtlmChallenge,
  credentials: { user: string; password: string; domain: string; workstation?: string },
  responses: NtlmV2Result,
): Buffer {
  const fields = [
    responses.lmResponse,
    responses.ntResponse,
    utf16(credentials.domain),
    utf16(credentials.user),
    utf16(credentials.workstation ?? ''),
    Buffer.alloc(0),
  ];
  const headerLength = 72;
  const header = Buffer.alloc(headerLength);
  SIGNATURE.copy(header, 0);
  header.writeUInt32LE(3, 8);
  let offset = headerLength;
  fields.forEach((field, i) => {
    const at = 12 + i * 8;
    header.writeUInt16LE(field.length, at);
    header.writeUInt16LE(field.length, at + 2);
    header.writeUInt32LE(offset, at + 4);
    offset += field.length;
  });
  // Only flags both sides support are echoed back (MS-NLMP §3.1.5.1.2).
  header.writeUInt32LE((CLIENT_FLAGS & challenge.flags) >>> 0, 60);
  VERSION.copy(header, 64);
  return Buffer.concat([header, ...fields]);
}

// ---------------------------------------------------------------------------------------------
// SPNEGO (RFC 4178 §4.2) with NTLMSSP as the only mechanism, in minimal DER.

const SPNEGO_OID = Buffer.from([0x06, 0x06, 0x2b, 0x06, 0x01, 0x05, 0x05, 0x02]);
const NTLMSSP_OID = Buffer.from([0x06, 0x0a, 0x2b, 0x06, 0x01, 0x04, 0x01, 0x82, 0x37, 0x02, 0x02, 0x0a]);

function der(tag: number, content: Buffer): Buffer {
  const n = content.length;
  let length: Buffer;
  if (n < 0x80) length = Buffer.from([n]);
  else if (n < 0x100) length = Buffer.from([0x81, n]);
  else if (n < 0x10000) length = Buffer.from([0x82, n >> 8, n & 0xff]);
  else length = Buffer.from([0x83, n >> 16, (n >> 8) & 0xff, n & 0xff]);
  return Buffer.concat([Buffer.from([tag]), length, content]);
}

interface DerNode {
  tag: number;
  content: Buffer;
  end: number;
}

function readDer(buf: Buffer, at: number): DerNode {
  if (at + 2 > buf.length) throw new Error('truncated DER');
  const tag = buf[at]!;
  let length = buf[at + 1]!;
  let p = at + 2;
  if (length & 0x80) {
    const count = length & 0x7f;
    if (count === 0 || count > 3 || p + count > buf.length) throw new Error('bad DER length');
    length = 0;
    for (let i = 0; i < count; i++) length = (length << 8) | buf[p + i]!;
    p += count;
  }
  if (p + length > buf.length) throw new Error('truncated DER');
  return { tag, content: buf.subarray(p, p + length), end: p + length };
}

function children(content: Buffer): DerNode[] {
  const out: DerNode[] = [];
  for (let p = 0; p < content.length; ) {
    const node = readDer(content, p);
    out.push(node);
    p = node.end;
  }
  return out;
}

/** RFC 4178 §4.2.1 NegTokenInit inside the GSS-API InitialContextToken, carrying the NTLM NEGOTIATE. */
export function spnegoInit(mechToken: Buffer): Buffer {
  const mechTypes = der(0xa0, der(0x30, NTLMSSP_OID));
  const token = der(0xa2, der(0x04, mechToken));
  return der(0x60, Buffer.concat([SPNEGO_OID, der(0xa0, der(0x30, Buffer.concat([mechTypes, token])))]));
}

/** RFC 4178 §4.2.2 NegTokenResp carrying the NTLM AUTHENTICATE. */
export function spnegoResponse(responseToken: Buffer): Buffer {
  return der(0xa1, der(0x30, der(0xa2, der(0x04, responseToken))));
}

/**
 * The NTLM message inside a server's NegTokenResp. A server may also answer with a raw NTLMSSP
 * message (no SPNEGO), which is returned as is.
 */
export function spnegoResponseToken(blob: Buffer): { token: Buffer | null; negState: number | null } {
  if (blob.subarray(0, 8).equals(SIGNATURE)) return { token: blob, negState: null };
  const outer = readDer(blob, 0);
  if (outer.tag !== 0xa1) throw new Error('not a SPNEGO NegTokenResp');
  const seq = readDer(outer.content, 0);
  let token: Buffer | null = null;
  let negState: number | null = null;
  for (const field of children(seq.content)) {
    if (field.tag === 0xa0) negState = readDer(field.content, 0).content[0] ?? null;
    if (field.tag === 0xa2) token = Buffer.from(readDer(field.content, 0).content);
  }
  return { token, negState };
}
