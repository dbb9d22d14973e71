/**
 * The network policy as pure functions: which addresses and names a connector of each `network`
 * mode may reach, and the operator's `CLOUDMUX_ALLOWED_NETWORKS` list.
 */
import type { AddressVerdict, NetworkMode, NetworkPolicy } from '../network-types.js';
import {
  type Cidr,
  CidrSyntaxError,
  cidrContains,
  classifyAddress,
  formatIp,
  parseCidr,
  parseIp,
  unmapIPv4,
} from './ip.js';

export const ALLOWED_NETWORKS_ENV = 'CLOUDMUX_ALLOWED_NETWORKS';

/** A configuration error found at startup (bad CIDR list, bad mode); not a client error. */
export class NetworkPolicyError extends Error {
  override readonly name = 'NetworkPolicyError';
}

/**
 * Parses a comma- and/or whitespace-separated CIDR list (`10.0.0.0/8, fd00::/8 192.168.1.5`).
 * Throws `NetworkPolicyError` naming every invalid entry.
 */
export function parseAllowedNetworks(
  value: string | readonly string[],
  source = ALLOWED_NETWORKS_ENV,
): Cidr[] {
  const entries = (typeof value === 'string' ? [value] : value)
    .flatMap((v) => v.split(/[\s,]+/))
    .filter((e) => e !== '');
  const networks: Cidr[] = [];
  const problems: string[] = [];
  for (const entry of entries) {
    try {
      networks.push(parseCidr(entry));
    } catch (error) {
      if (!(error instanceof CidrSyntaxError)) throw error;
      problems.push(error.message);
    }
  }
  if (problems.length > 0) throw new NetworkPolicyError(`${source}: invalid network ${problems.join('; ')}`);
  return networks;
}

/**
 * The policy for a connector's `network` mode, with the operator's allowed networks from the
 * environment. An unset or blank `CLOUDMUX_ALLOWED_NETWORKS` means no restriction.
 */
export function networkPolicyFromEnv(
  mode: NetworkMode,
  env: Record<string, string | undefined> = process.env,
): NetworkPolicy {
  if (mode !== 'saas' && mode !== 'self_hosted' && mode !== 'none') {
    throw new NetworkPolicyError(`unknown network mode ${JSON.stringify(mode)}`);
  }
  const raw = env[ALLOWED_NETWORKS_ENV];
  if (raw === undefined || raw.trim() === '') return { mode };
  return { mode, allowedNetworks: parseAllowedNetworks(raw).map((c) => c.text) };
}

/** A policy with its network list parsed once. */
export interface CompiledPolicy {
  readonly policy: Readonly<NetworkPolicy>;
  readonly networks?: readonly Cidr[];
}

export function compilePolicy(policy: NetworkPolicy): CompiledPolicy {
  if (policy == null || !['saas', 'self_hosted', 'none'].includes(policy.mode)) {
    throw new NetworkPolicyError(`unknown network mode ${JSON.stringify(policy?.mode)}`);
  }
  const frozen: NetworkPolicy = { mode: policy.mode };
  if (policy.allowedNetworks === undefined) return { policy: Object.freeze(frozen) };
  const networks = parseAllowedNetworks(policy.allowedNetworks, 'allowedNetworks');
  frozen.allowedNetworks = Object.freeze(networks.map((c) => c.text));
  return { policy: Object.freeze(frozen), networks: Object.freeze(networks) };
}

const MODE_LABEL: Record<NetworkMode, string> = {
  saas: 'a saas connector',
  self_hosted: 'a self-hosted connector',
  none: 'a connector without network access',
};

/** Checks one IP literal (any notation) against the policy. */
export function evaluateAddress(compiled: CompiledPolicy, address: string): AddressVerdict {
  const { policy, networks } = compiled;
  const ip = parseIp(address);
  if (!ip) return { allowed: false, address, reason: `${JSON.stringify(address)} is not an IP address` };
  const canonical = formatIp(ip);
  const family = ip.family;
  const klass = classifyAddress(ip);
  const refuse = (reason: string): AddressVerdict => ({
    allowed: false,
    address: canonical,
    family,
    class: klass,
    reason,
  });
  if (policy.mode === 'none') return refuse(`${MODE_LABEL.none} may not open connections`);
  if (klass === 'metadata') return refuse(`${canonical} is a cloud metadata address`);
  if (klass === 'unspecified') return refuse(`${canonical} is an unspecified address`);
  if (policy.mode === 'saas' && klass !== 'public') {
    return refuse(`${canonical} is a ${klass.replace('_', '-')} address, not allowed for ${MODE_LABEL.saas}`);
  }
  if (networks && !networks.some((n) => cidrContains(n, ip))) {
    return refuse(`${canonical} is outside the allowed networks (${ALLOWED_NETWORKS_ENV})`);
  }
  // Hand back the unmapped form so a pinned connection uses the address that was matched.
  const connectable = unmapIPv4(ip);
  return { allowed: true, address: formatIp(connectable), family: connectable.family, class: klass };
}

// Names that reach metadata services or the local host without any DNS answer to check
// (resolver search domains, /etc/hosts); the address check catches the rest.
const METADATA_NAMES = new Set([
  'metadata.google.internal',
  'metadata.goog',
  'metadata',
  'instance-data',
  'instance-data.ec2.internal',
]);
const HOST_NAME =
  /^(?=.{1,253}$)[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?(?:\.[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?)*$/;

/** Checks a host name before it is resolved; returns the reason it is refused, or undefined. */
export function refuseHostName(compiled: CompiledPolicy, host: string): string | undefined {
  const mode = compiled.policy.mode;
  if (mode === 'none') return `${MODE_LABEL.none} may not open connections`;
  const name = host.toLowerCase().replace(/\.$/, '');
  if (!HOST_NAME.test(name)) return `${JSON.stringify(host)} is not a valid host name`;
  if (METADATA_NAMES.has(name)) return `${name} is a cloud metadata host`;
  if (mode === 'saas' && (name === 'localhost' || name.endsWith('.localhost'))) {
    return `${name} is a loopback name, not allowed for ${MODE_LABEL.saas}`;
  }
  return undefined;
}
