import { describe, expect, it } from 'vitest';
import {
  authenticateMessage,
  md4,
  ntlmV2Response,
  ntowfv2,
  parseChallenge,
  spnegoInit,
  spnegoResponseToken,
} from '../src/ntlm.js';
import { aesCmac, signMessage, smb3Kdf } from '../src/smb2/crypto.js';

const hex = (s: string) => Buffer.from(s.replace(/\s+/g, ''), 'hex');

describe('MD4 (RFC 1320 §A.5 test suite)', () => {
  it.each([
    ['', '31d6cfe0d16ae931b73c59d7e0c089c0'],
    ['a', 'bde52cb31de33e46245e05fbdbd6fb24'],
    ['abc', 'a448017aaf21d8525fc10ae87aa6729d'],
    ['message digest', 'd9130a8164549fe818874806e1c7014b'],
    ['abcdefghijklmnopqrstuvwxyz', 'd79e1c308aa5bbcdeea8ed63df412da9'],
    [
      '12345678901234567890123456789012345678901234567890123456789012345678901234567890',
      'e33b4ddc9c38f2199c3e7b164fcc0536',
    ],
  ])('md4(%j)', (input, digest) => {
    expect(md4(Buffer.from(input, 'latin1')).toString('hex')).toBe(digest);
  });
});

describe('NTLMv2 (MS-NLMP §4.2.4 test vectors)', () => {
  // MS-NLMP §4.2.4.1.1: User "User", domain "Domain", password "Password".
  const credentials = { user: 'User', domain: 'Domain', password: 'Password' };
  const targetInfo = hex('02000c0044006f006d00610069006e00 01000c005300650072007600650072000000 0000');

  it('NTOWFv2', () => {
    expect(ntowfv2('Password', 'User', 'Domain').toString('hex')).toBe('0c868a403bfd7a93a3001ef22ef02e3f');
  });

  it('NTProofStr, LMv2 response and session base key', () => {
    const challenge = {
      flags: 0xe28a8233,
      serverChallenge: hex('0123456789abcdef'),
      targetInfo,
      timestamp: null,
    };
    const result = ntlmV2Response(challenge, credentials, {
      clientChallenge: hex('aaaaaaaaaaaaaaaa'),
      time: Buffer.alloc(8),
    });
    expect(result.ntResponse.subarray(0, 16).toString('hex')).toBe('68cd0ab851e51c96aabc927bebef6a1c');
    expect(result.lmResponse.toString('hex')).toBe('86c35097ac9cec102554764a57cccc19aaaaaaaaaaaaaaaa');
    expect(result.sessionKey.toString('hex')).toBe('8de40ccadbc14a82f15cb0ad0de95ca3');
  });

  it('an AUTHENTICATE message carries the responses at the offsets it names', () => {
    const challenge = {
      flags: 0xe28a8233,
      serverChallenge: hex('0123456789abcdef'),
      targetInfo,
      timestamp: null,
    };
    const result = ntlmV2Response(challenge, credentials);
    const msg = authenticateMessage(challenge, credentials, result);
    const field = (i: number) =>
      msg.subarray(msg.readUInt32LE(16 + i * 8), msg.readUInt32LE(16 + i * 8) + msg.readUInt16LE(12 + i * 8));
    expect(field(0).equals(result.lmResponse)).toBe(true);
    expect(field(1).equals(result.ntResponse)).toBe(true);
    expect(field(2).toString('utf16le')).toBe('Domain');
    expect(field(3).toString('utf16le')).toBe('User');
  });

  it('with MsvAvTimestamp the LMv2 response is zeros', () => {
    const withTime = Buffer.concat([hex('07000800'), Buffer.alloc(8, 1), hex('00000000')]);
    const challengeMsg = Buffer.alloc(48 + withTime.length);
    Buffer.from('NTLMSSP\0', 'latin1').copy(challengeMsg);
    challengeMsg.writeUInt32LE(2, 8);
    challengeMsg.writeUInt16LE(withTime.length, 40);
    challengeMsg.writeUInt32LE(48, 44);
    withTime.copy(challengeMsg, 48);
    const parsed = parseChallenge(challengeMsg);
    expect(parsed.timestamp?.equals(Buffer.alloc(8, 1))).toBe(true);
    expect(ntlmV2Response(parsed, credentials).lmResponse.equals(Buffer.alloc(24))).toBe(true);
  });

  it('SPNEGO: the NTLM token is found in a NegTokenResp, and a raw NTLMSSP blob passes through', () => {
    const token = Buffer.from('NTLMSSP\0rest', 'latin1');
    // a1 { 30 { a0 { 0a 01 01 } a2 { 04 <token> } } }
    const inner = Buffer.concat([
      hex('a0030a0101'),
      Buffer.from([0xa2, token.length + 2, 0x04, token.length]),
      token,
    ]);
    const resp = Buffer.concat([Buffer.from([0xa1, inner.length + 2, 0x30, inner.length]), inner]);
    expect(spnegoResponseToken(resp)).toEqual({ token, negState: 1 });
    expect(spnegoResponseToken(token).token).toBe(token);
    expect(spnegoInit(token)[0]).toBe(0x60);
  });
});

describe('SMB signing primitives', () => {
  const key = hex('2b7e151628aed2a6abf7158809cf4f3c');
  it.each([
    ['', 'bb1d6929e95937287fa37d129b756746'],
    ['6bc1bee22e409f96e93d7e117393172a', '070a16b46b4d4144f79bdd9dd04a287c'],
    [
      '6bc1bee22e409f96e93d7e117393172aae2d8a571e03ac9c9eb76fac45af8e5130c81c46a35ce411',
      'dfa66747de9ae63030ca32611497c827',
    ],
    [
      '6bc1bee22e409f96e93d7e117393172aae2d8a571e03ac9c9eb76fac45af8e51' +
        '30c81c46a35ce411e5fbc1191a0a52eff69f2445df4f9b17ad2b417be66c3710',
      '51f0bebf7e3b9d92fc49741779363cfe',
    ],
  ])('AES-CMAC (RFC 4493 §4) of %s', (message, mac) => {
    expect(aesCmac(key, hex(message)).toString('hex')).toBe(mac);
  });

  it('AES-CMAC of a long message equals the block-by-block definition', () => {
    const long = Buffer.alloc(200_003, 7);
    expect(aesCmac(key, long).equals(signMessage('aes-cmac', key, long))).toBe(true);
    expect(aesCmac(key, long).equals(aesCmac(key, Buffer.concat([long, Buffer.from([1])])))).toBe(false);
  });

  it('the SP800-108 KDF gives 16 bytes that depend on label and context', () => {
    const a = smb3Kdf(key, 'SMB2AESCMAC\0', Buffer.from('SmbSign\0'));
    const b = smb3Kdf(key, 'SMBSigningKey\0', Buffer.alloc(64));
    expect(a.length).toBe(16);
    expect(a.equals(b)).toBe(false);
  });
});
