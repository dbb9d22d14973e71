/**
 * IP address parsing, CIDR matching and classification on plain bytes. Written here rather than
 * taken from a package so that every notation the OS resolver accepts (inet_aton's decimal, octal,
 * hex and short forms) and every embedded-IPv4 IPv6 form is handled in one place we test.
 */
import type { AddressClass } from '../network-types.js';

export interface IpAddress {
  readonly family: 4 | 6;
  /** 4 or 16 bytes, network order. */
  readonly bytes: Uint8Array;
  /** IPv6 zone (`fe80::1%eth0`), without the `%`. */
  readonly zone?: string;
}

export interface Cidr {
  readonly family: 4 | 6;
  readonly bytes: Uint8Array;
  readonly prefix: number;
  /** Canonical text, e.g. `10.0.0.0/8`. */
  readonly text: string;
}

const DECIMAL_OCTET = /^(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)$/;

/** Strict dotted-quad: four decimal octets, no leading zeros (what Node's `net.isIPv4` accepts). */
function parseIPv4Strict(text: string): Uint8Array | undefined {
  const parts = text.split('.');
  if (parts.length !== 4 || !parts.every((p) => DECIMAL_OCTET.test(p))) return undefined;
  return Uint8Array.from(parts.map(Number));
}

function parseLegacyPart(part: string): number | undefined {
  if (part === '') return undefined;
  if (/^0[xX][0-9a-fA-F]*$/.test(part)) return part.length === 2 ? 0 : Number.parseInt(part.slice(2), 16);
  if (/^0[0-7]+$/.test(part)) return Number.parseInt(part.slice(1), 8);
  if (/^(?:0|[1-9]\d*)$/.test(part)) return Number(part);
  return undefined;
}

/**
 * inet_aton / WHATWG IPv4 forms: one to four parts, each decimal, octal (leading 0) or hex (0x);
 * the last part fills the remaining bytes, so `2130706433`, `0177.0.0.1`, `0x7f.1` and `127.1` are
 * all 127.0.0.1. One trailing dot is tolerated as WHATWG does.
 */
function parseIPv4Legacy(text: string): Uint8Array | undefined {
  const trimmed = text.endsWith('.') ? text.slice(0, -1) : text;
  const parts = trimmed.split('.');
  if (parts.length < 1 || parts.length > 4) return undefined;
  const values: number[] = [];
  for (const part of parts) {
    const value = parseLegacyPart(part);
    if (value === undefined || !Number.isSafeInteger(value)) return undefined;
    values.push(value);
  }
  const last = values.pop()!;
  if (values.some((v) => v > 255)) return undefined;
  const remaining = 4 - values.length;
  if (last >= 2 ** (8 * remaining)) return undefined;
  const bytes = new Uint8Array(4);
  values.forEach((v, i) => {
    bytes[i] = v;
  });
  let rest = last;
  for (let i = 3; i >= values.length; i--) {
    bytes[i] = rest % 256;
    rest = Math.floor(rest / 256);
  }
  return bytes;
}

function parseIPv6(text: string): Uint8Array | undefined {
  if (text.length === 0 || text.length > 45) return undefined;
  let head = text;
  let tailV4: Uint8Array | undefined;
  const lastColon = head.lastIndexOf(':');
  if (head.slice(lastColon + 1).includes('.')) {
    tailV4 = parseIPv4Strict(head.slice(lastColon + 1));
    if (!tailV4) return undefined;
    // Keep the colon so `::1.2.3.4` still splits into an empty head group.
    head = `${head.slice(0, lastColon + 1)}0:0`;
  }
  const doubles = head.split('::');
  if (doubles.length > 2) return undefined;
  const toGroups = (s: string): number[] | undefined => {
    if (s === '') return [];
    const groups = s.split(':');
    if (!groups.every((g) => /^[0-9a-fA-F]{1,4}$/.test(g))) return undefined;
    return groups.map((g) => Number.parseInt(g, 16));
  };
  const left = toGroups(doubles[0]!);
  const right = doubles.length === 2 ? toGroups(doubles[1]!) : [];
  if (!left || !right) return undefined;
  let groups: number[];
  if (doubles.length === 2) {
    const missing = 8 - left.length - right.length;
    if (missing < 1) return undefined;
    groups = [...left, ...new Array<number>(missing).fill(0), ...right];
  } else {
    groups = left;
  }
  if (groups.length !== 8) return undefined;
  const bytes = new Uint8Array(16);
  groups.forEach((g, i) => {
    bytes[2 * i] = g >> 8;
    bytes[2 * i + 1] = g & 0xff;
  });
  if (tailV4) bytes.set(tailV4, 12);
  return bytes;
}

export interface ParseIpOptions {
  /** Accept inet_aton IPv4 forms (decimal, octal, hex, short). Default true. */
  legacy?: boolean;
}

/**
 * Parses an IPv4 or IPv6 literal (brackets and an IPv6 zone allowed). Returns undefined for
 * anything else, including host names.
 */
export function parseIp(input: string, options: ParseIpOptions = {}): IpAddress | undefined {
  let text = input.trim();
  if (text.startsWith('[') && text.endsWith(']')) text = text.slice(1, -1);
  if (text.includes(':')) {
    let zone: string | undefined;
    const percent = text.indexOf('%');
    if (percent !== -1) {
      zone = text.slice(percent + 1);
      text = text.slice(0, percent);
      if (!/^[0-9A-Za-z_.-]+$/.test(zone)) return undefined;
    }
    const bytes = parseIPv6(text);
    if (!bytes) return undefined;
    return zone === undefined ? { family: 6, bytes } : { family: 6, bytes, zone };
  }
  const bytes = options.legacy === false ? parseIPv4Strict(text) : parseIPv4Legacy(text);
  return bytes ? { family: 4, bytes } : undefined;
}

/** Canonical text: dotted quad, or RFC 5952 compressed lowercase IPv6 (mapped as `::ffff:a.b.c.d`). */
export function formatIp(ip: IpAddress): string {
  const b = ip.bytes;
  if (ip.family === 4) return Array.from(b).join('.');
  const groups: number[] = [];
  for (let i = 0; i < 16; i += 2) groups.push((b[i]! << 8) | b[i + 1]!);
  const zone = ip.zone === undefined ? '' : `%${ip.zone}`;
  if (groups.slice(0, 5).every((g) => g === 0) && groups[5] === 0xffff) {
    return `::ffff:${b[12]}.${b[13]}.${b[14]}.${b[15]}${zone}`;
  }
  let bestStart = -1;
  let bestLen = 1;
  for (let i = 0; i < 8; ) {
    if (groups[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > bestLen) {
      bestStart = i;
      bestLen = j - i;
    }
    i = j;
  }
  const hex = groups.map((g) => g.toString(16));
  if (bestStart === -1) return `${hex.join(':')}${zone}`;
  const left = hex.slice(0, bestStart).join(':');
  const right = hex.slice(bestStart + bestLen).join(':');
  return `${left}::${right}${zone}`;
}

/** `::ffff:a.b.c.d` → the IPv4 address (a dual-stack socket connects to it); anything else unchanged. */
export function unmapIPv4(ip: IpAddress): IpAddress {
  if (
    ip.family === 6 &&
    ip.bytes.subarray(0, 10).every((x) => x === 0) &&
    ip.bytes[10] === 0xff &&
    ip.bytes[11] === 0xff
  ) {
    return { family: 4, bytes: ip.bytes.slice(12) };
  }
  return ip;
}

function prefixMatches(bytes: Uint8Array, network: Uint8Array, prefix: number): boolean {
  const whole = prefix >> 3;
  for (let i = 0; i < whole; i++) if (bytes[i] !== network[i]) return false;
  const bits = prefix & 7;
  if (bits === 0) return true;
  const mask = (0xff << (8 - bits)) & 0xff;
  return (bytes[whole]! & mask) === (network[whole]! & mask);
}

export class CidrSyntaxError extends Error {
  override readonly name = 'CidrSyntaxError';
}

/**
 * Parses `a.b.c.d/n`, `x::/n` or a bare address (a single-host network). Strict notation only:
 * a network list is operator configuration and a typo must fail, not be reinterpreted.
 */
export function parseCidr(text: string): Cidr {
  const entry = text.trim();
  const slash = entry.indexOf('/');
  const addressText = slash === -1 ? entry : entry.slice(0, slash);
  const ip = parseIp(addressText, { legacy: false });
  if (!ip || ip.zone !== undefined || addressText.startsWith('[')) {
    throw new CidrSyntaxError(
      `"${entry}" is not an IPv4 or IPv6 network (expected e.g. 10.0.0.0/8 or fd00::/8)`,
    );
  }
  const max = ip.family === 4 ? 32 : 128;
  let prefix = max;
  if (slash !== -1) {
    const prefixText = entry.slice(slash + 1);
    if (!/^(?:0|[1-9]\d{0,2})$/.test(prefixText) || Number(prefixText) > max) {
      throw new CidrSyntaxError(`"${entry}": the prefix length must be a number from 0 to ${max}`);
    }
    prefix = Number(prefixText);
  }
  const masked = new Uint8Array(ip.bytes.length);
  for (let i = 0; i < masked.length; i++) {
    const bits = Math.max(0, Math.min(8, prefix - 8 * i));
    masked[i] = ip.bytes[i]! & ((0xff << (8 - bits)) & 0xff);
  }
  const network: IpAddress = { family: ip.family, bytes: masked };
  if (!masked.every((x, i) => x === ip.bytes[i])) {
    throw new CidrSyntaxError(`"${entry}" has host bits set; did you mean ${formatIp(network)}/${prefix}?`);
  }
  return { family: ip.family, bytes: masked, prefix, text: `${formatIp(network)}/${prefix}` };
}

/** Whether `ip` lies in `cidr`; an IPv4-mapped IPv6 address matches IPv4 networks. */
export function cidrContains(cidr: Cidr, ip: IpAddress): boolean {
  const candidate = cidr.family === 4 ? unmapIPv4(ip) : ip;
  if (candidate.family !== cidr.family) return false;
  return prefixMatches(candidate.bytes, cidr.bytes, cidr.prefix);
}

type Rule = readonly [network: string, prefix: number, klass: AddressClass | 'embedded' | 'embedded_public'];

// Most specific first. Sources: IANA IPv4/IPv6 Special-Purpose Address Registries (RFC 6890 and updates).
const V4_METADATA = [
  '169.254.169.254', // AWS / GCP / Azure / OCI / DigitalOcean instance metadata
  '169.254.170.2', // AWS ECS task metadata and credentials
  '169.254.170.23', // AWS EKS Pod Identity agent
  '100.100.100.200', // Alibaba Cloud ECS metadata
  '168.63.129.16', // Azure WireServer (a public-space address reachable only from inside Azure)
];
const V6_METADATA = [
  'fd00:ec2::254', // AWS IMDS over IPv6
  'fd00:ec2::23', // AWS EKS Pod Identity agent over IPv6
  'fe80::a9fe:a9fe', // OpenStack metadata over IPv6
];

const V4_RULES: Rule[] = [
  ['0.0.0.0', 8, 'unspecified'], // "this network"; Linux connects 0.0.0.0 to the local host
  ['10.0.0.0', 8, 'private'],
  ['100.64.0.0', 10, 'cgnat'],
  ['127.0.0.0', 8, 'loopback'],
  ['169.254.0.0', 16, 'link_local'],
  ['172.16.0.0', 12, 'private'],
  ['192.0.0.0', 24, 'reserved'], // IETF protocol assignments
  ['192.0.2.0', 24, 'documentation'],
  ['192.88.99.0', 24, 'reserved'], // deprecated 6to4 relay anycast
  ['192.168.0.0', 16, 'private'],
  ['198.18.0.0', 15, 'reserved'], // benchmarking
  ['198.51.100.0', 24, 'documentation'],
  ['203.0.113.0', 24, 'documentation'],
  ['224.0.0.0', 4, 'multicast'],
  ['255.255.255.255', 32, 'broadcast'],
  ['240.0.0.0', 4, 'reserved'],
];

const V6_RULES: Rule[] = [
  ['::', 128, 'unspecified'],
  ['::1', 128, 'loopback'],
  ['::ffff:0:0', 96, 'embedded_public'], // IPv4-mapped: a dual-stack socket reaches the IPv4 address
  ['::ffff:0:0:0', 96, 'embedded_public'], // SIIT IPv4-translated
  ['64:ff9b::', 96, 'embedded_public'], // NAT64 well-known prefix: the translator reaches the IPv4 address
  ['64:ff9b:1::', 48, 'private'], // local-use NAT64 (RFC 8215)
  ['::', 96, 'embedded'], // deprecated IPv4-compatible
  ['100::', 64, 'reserved'], // discard-only
  ['2001:2::', 48, 'reserved'], // benchmarking
  ['2001:10::', 28, 'reserved'], // ORCHID (deprecated)
  ['2001:20::', 28, 'reserved'], // ORCHIDv2
  ['2001:db8::', 32, 'documentation'],
  ['2001::', 32, 'reserved'], // Teredo: the embedded endpoint is obfuscated, refuse outright
  ['2002::', 16, 'embedded_public'], // 6to4: the embedded IPv4 is the relay target
  ['3fff::', 20, 'documentation'], // RFC 9637
  ['5f00::', 16, 'reserved'], // SRv6 SIDs
  ['fc00::', 7, 'private'], // unique local
  ['fe80::', 10, 'link_local'],
  ['fec0::', 10, 'private'], // deprecated site-local
  ['ff00::', 8, 'multicast'],
  ['2000::', 3, 'public'], // global unicast; everything left over is reserved
];

interface CompiledRule {
  bytes: Uint8Array;
  prefix: number;
  klass: Rule[2];
}

const compile = (rules: Rule[], family: 4 | 6): CompiledRule[] =>
  rules.map(([network, prefix, klass]) => {
    const ip = parseIp(network, { legacy: false });
    if (!ip || ip.family !== family) throw new Error(`bad built-in rule ${network}`);
    return { bytes: ip.bytes, prefix, klass };
  });

const V4 = compile(V4_RULES, 4);
const V6 = compile(V6_RULES, 6);
const METADATA = new Set(
  [...V4_METADATA, ...V6_METADATA].map((a) => formatIp(parseIp(a, { legacy: false })!)),
);

function embeddedV4(ip: IpAddress, prefixStart: number): IpAddress {
  return { family: 4, bytes: ip.bytes.slice(prefixStart, prefixStart + 4) };
}

function classifyParsed(ip: IpAddress): AddressClass {
  const canonical = formatIp({ family: ip.family, bytes: ip.bytes });
  if (METADATA.has(canonical)) return 'metadata';
  if (ip.family === 4) {
    for (const rule of V4)
      if (prefixMatches(ip.bytes, rule.bytes, rule.prefix)) return rule.klass as AddressClass;
    return 'public';
  }
  for (const rule of V6) {
    if (!prefixMatches(ip.bytes, rule.bytes, rule.prefix)) continue;
    if (rule.klass === 'embedded' || rule.klass === 'embedded_public') {
      // 6to4 carries the IPv4 address in bytes 2–5; the other forms in the last four bytes.
      const inner = classifyParsed(embeddedV4(ip, rule.prefix === 16 ? 2 : 12));
      if (inner === 'public' && rule.klass === 'embedded') return 'reserved';
      return inner;
    }
    return rule.klass;
  }
  return 'reserved';
}

/**
 * The class of an IP address in any notation (`2130706433`, `0x7f.1`, `[::ffff:7f00:1]`,
 * `fe80::1%eth0`). IPv6 forms that embed an IPv4 address (mapped, NAT64, 6to4, compatible) take
 * the class of the embedded address. Throws `TypeError` for a string that is not an address.
 */
export function classifyAddress(input: string | IpAddress): AddressClass {
  const ip = typeof input === 'string' ? parseIp(input) : input;
  if (!ip) throw new TypeError(`not an IP address: ${JSON.stringify(input)}`);
  return classifyParsed(ip);
}
