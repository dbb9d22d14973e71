import { describe, expect, it } from 'vitest';
import {
  ALLOWED_NETWORKS_ENV,
  cidrContains,
  classifyAddress,
  formatIp,
  NetworkPolicyError,
  networkPolicyFromEnv,
  parseAllowedNetworks,
  parseCidr,
  parseIp,
} from '../src/net/index.js';

describe('parseIp / formatIp', () => {
  it.each([
    ['2130706433', '127.0.0.1'],
    ['0177.0.0.1', '127.0.0.1'],
    ['0x7f.1', '127.0.0.1'],
    ['0x7f.0x0.0x0.0x1', '127.0.0.1'],
    ['127.1', '127.0.0.1'],
    ['127.0.1', '127.0.0.1'],
    ['0x7f000001', '127.0.0.1'],
    ['017700000001', '127.0.0.1'],
    ['0', '0.0.0.0'],
    ['127.0.0.1.', '127.0.0.1'],
    ['10.0.0.1', '10.0.0.1'],
    ['[::1]', '::1'],
    ['::ffff:127.0.0.1', '::ffff:127.0.0.1'],
    ['::ffff:7f00:1', '::ffff:127.0.0.1'],
    ['0:0:0:0:0:ffff:7f00:1', '::ffff:127.0.0.1'],
    ['FD00:EC2:0:0:0:0:0:254', 'fd00:ec2::254'],
    ['2001:db8:0:0:1:0:0:1', '2001:db8::1:0:0:1'],
    ['1:0:0:0:0:0:0:0', '1::'],
    ['fe80::1%eth0', 'fe80::1%eth0'],
    ['64:ff9b::169.254.169.254', '64:ff9b::a9fe:a9fe'],
  ])('%s → %s', (input, canonical) => {
    const ip = parseIp(input);
    expect(ip).toBeDefined();
    expect(formatIp(ip!)).toBe(canonical);
  });

  it.each([
    '',
    'example.com',
    '256.0.0.1',
    '1.2.3.4.5',
    '0x1g',
    '08.0.0.1',
    '1::2::3',
    '1:2:3:4:5:6:7:8:9',
    '::ffff:1.2.3',
    'fe80::1%',
    '4294967296',
    '1.16777216',
  ])('rejects %j', (input) => {
    expect(parseIp(input)).toBeUndefined();
  });

  it('strict mode refuses the legacy IPv4 forms', () => {
    expect(parseIp('127.1', { legacy: false })).toBeUndefined();
    expect(parseIp('0177.0.0.1', { legacy: false })).toBeUndefined();
    expect(parseIp('127.0.0.1', { legacy: false })).toBeDefined();
  });
});

describe('classifyAddress', () => {
  it.each([
    ['8.8.8.8', 'public'],
    ['1.1.1.1', 'public'],
    ['10.1.2.3', 'private'],
    ['172.16.0.1', 'private'],
    ['172.31.255.255', 'private'],
    ['172.32.0.1', 'public'],
    ['192.168.1.1', 'private'],
    ['127.0.0.1', 'loopback'],
    ['127.255.255.254', 'loopback'],
    ['2130706433', 'loopback'],
    ['0x7f.1', 'loopback'],
    ['0177.0.0.1', 'loopback'],
    ['169.254.1.1', 'link_local'],
    ['169.254.169.254', 'metadata'],
    ['169.254.170.2', 'metadata'],
    ['100.100.100.200', 'metadata'],
    ['168.63.129.16', 'metadata'],
    ['100.64.0.1', 'cgnat'],
    ['100.127.255.255', 'cgnat'],
    ['100.128.0.1', 'public'],
    ['224.0.0.1', 'multicast'],
    ['239.255.255.250', 'multicast'],
    ['255.255.255.255', 'broadcast'],
    ['240.0.0.1', 'reserved'],
    ['192.0.0.8', 'reserved'],
    ['198.18.0.1', 'reserved'],
    ['0.0.0.0', 'unspecified'],
    ['0.1.2.3', 'unspecified'],
    ['192.0.2.10', 'documentation'],
    ['198.51.100.1', 'documentation'],
    ['203.0.113.9', 'documentation'],
    ['::', 'unspecified'],
    ['::1', 'loopback'],
    ['::ffff:127.0.0.1', 'loopback'],
    ['::ffff:7f00:1', 'loopback'],
    ['::ffff:169.254.169.254', 'metadata'],
    ['::ffff:10.0.0.1', 'private'],
    ['::ffff:8.8.8.8', 'public'],
    ['::ffff:0:7f00:1', 'loopback'],
    ['::127.0.0.1', 'loopback'],
    ['::8.8.8.8', 'reserved'],
    ['64:ff9b::7f00:1', 'loopback'],
    ['64:ff9b::a9fe:a9fe', 'metadata'],
    ['64:ff9b::808:808', 'public'],
    ['64:ff9b:1::1', 'private'],
    ['2002:7f00:1::1', 'loopback'],
    ['2002:a9fe:a9fe::', 'metadata'],
    ['2002:808:808::1', 'public'],
    ['2001:0:4136:e378::1', 'reserved'],
    ['fd00:ec2::254', 'metadata'],
    ['fd00:ec2::23', 'metadata'],
    ['fd12:3456::1', 'private'],
    ['fc00::1', 'private'],
    ['fe80::1', 'link_local'],
    ['fe80::1%lo', 'link_local'],
    ['fe80::a9fe:a9fe', 'metadata'],
    ['fec0::1', 'private'],
    ['ff02::1', 'multicast'],
    ['2001:db8::1', 'documentation'],
    ['3fff::1', 'documentation'],
    ['100::1', 'reserved'],
    ['2606:4700:4700::1111', 'public'],
    ['2a00:1450:4001::200e', 'public'],
    ['4000::1', 'reserved'],
  ])('%s is %s', (address, klass) => {
    expect(classifyAddress(address)).toBe(klass);
  });

  it('throws on something that is not an address', () => {
    expect(() => classifyAddress('metadata.google.internal')).toThrow(TypeError);
  });
});

describe('CIDR lists (CLOUDMUX_ALLOWED_NETWORKS)', () => {
  it('parses comma and space separated lists', () => {
    const nets = parseAllowedNetworks(' 10.0.0.0/8, 192.168.1.0/24  fd00::/8,,127.0.0.1 ');
    expect(nets.map((n) => n.text)).toEqual(['10.0.0.0/8', '192.168.1.0/24', 'fd00::/8', '127.0.0.1/32']);
  });

  it('matches addresses, IPv4-mapped ones against IPv4 networks', () => {
    const net = parseCidr('10.0.0.0/8');
    expect(cidrContains(net, parseIp('10.200.3.4')!)).toBe(true);
    expect(cidrContains(net, parseIp('::ffff:10.200.3.4')!)).toBe(true);
    expect(cidrContains(net, parseIp('11.0.0.1')!)).toBe(false);
    const odd = parseCidr('172.16.0.0/12');
    expect(cidrContains(odd, parseIp('172.31.0.1')!)).toBe(true);
    expect(cidrContains(odd, parseIp('172.32.0.1')!)).toBe(false);
    const v6 = parseCidr('fd00:1234::/32');
    expect(cidrContains(v6, parseIp('fd00:1234:ffff::1')!)).toBe(true);
    expect(cidrContains(v6, parseIp('fd00:1235::1')!)).toBe(false);
    expect(cidrContains(parseCidr('0.0.0.0/0'), parseIp('8.8.8.8')!)).toBe(true);
    expect(cidrContains(parseCidr('0.0.0.0/0'), parseIp('2001:4860::1')!)).toBe(false);
  });

  it.each([
    ['10.0.0.0/33', /prefix length must be a number from 0 to 32/],
    ['fd00::/129', /from 0 to 128/],
    ['10.0.0.1/8', /host bits set; did you mean 10\.0\.0\.0\/8/],
    ['10/8', /not an IPv4 or IPv6 network/],
    ['example.com/24', /not an IPv4 or IPv6 network/],
    ['10.0.0.0/', /prefix length/],
    ['10.0.0.0/08', /prefix length/],
    ['[::1]/128', /not an IPv4 or IPv6 network/],
  ])('refuses %s with a clear error', (entry, message) => {
    expect(() => parseAllowedNetworks(`192.168.0.0/16,${entry}`)).toThrow(NetworkPolicyError);
    expect(() => parseAllowedNetworks(`192.168.0.0/16,${entry}`)).toThrow(message);
    expect(() => parseAllowedNetworks(entry)).toThrow(
      new RegExp(`^${ALLOWED_NETWORKS_ENV}: invalid network`),
    );
  });

  it('builds the policy from the environment', () => {
    expect(networkPolicyFromEnv('saas', {})).toEqual({ mode: 'saas' });
    expect(networkPolicyFromEnv('self_hosted', { [ALLOWED_NETWORKS_ENV]: '  ' })).toEqual({
      mode: 'self_hosted',
    });
    expect(
      networkPolicyFromEnv('self_hosted', { [ALLOWED_NETWORKS_ENV]: '10.0.0.0/8 192.168.0.0/16' }),
    ).toEqual({
      mode: 'self_hosted',
      allowedNetworks: ['10.0.0.0/8', '192.168.0.0/16'],
    });
    expect(() => networkPolicyFromEnv('self_hosted', { [ALLOWED_NETWORKS_ENV]: '10.0.0.0/80' })).toThrow(
      NetworkPolicyError,
    );
    expect(() => networkPolicyFromEnv('intranet' as never, {})).toThrow(NetworkPolicyError);
  });
});
