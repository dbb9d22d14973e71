// The network guard: address classification, the per-mode network policy, the connect-time guard
// (lookup, raw sockets, http/https agents) and pass-through target resolution. Types live in
// ../network-types.ts.

export type { NetworkGuardOptions } from './guard.js';
export { createNetworkGuard, networkRefusalFrom } from './guard.js';
export type { Cidr, IpAddress, ParseIpOptions } from './ip.js';
export { CidrSyntaxError, cidrContains, classifyAddress, formatIp, parseCidr, parseIp } from './ip.js';
export { filterForwardedHeaders, hostAllowed, resolvePassThroughUrl } from './pass-through.js';
export {
  ALLOWED_NETWORKS_ENV,
  NetworkPolicyError,
  networkPolicyFromEnv,
  parseAllowedNetworks,
} from './policy.js';
