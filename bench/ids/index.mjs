// bench/ids — encode + decode ops/s of the id codec candidates, as ratios against node:crypto
// AES-256-GCM with a random IV measured in the same run (interleaved rounds, medians), plus the
// 1,000-item listing case with and without the codec's cache. Run: `pnpm bench:ids`.
// Env: BENCH_ROUNDS (default 7), BENCH_BATCH_MS (default 200), BENCH_JSON=1 for a JSON line at the end.
import { createCipheriv, createDecipheriv, createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { aessiv, gcmsiv } from '@noble/ciphers/aes.js';
// TypeScript source through the tsx loader: the bench measures exactly what core ships, without a build.
import { createIdCodec, encodeAad, sivKeyFrom, sivOpen, sivSeal } from '../../packages/core/src/ids.ts';
import { Keyring } from '../../packages/core/src/secrets.ts';

const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 7);
const BATCH_MS = Number(process.env.BENCH_BATCH_MS ?? 200);
const LISTING_ITEMS = 1000;
const TARGET_ENCODES_PER_S = 100_000;
const TARGET_LISTING_MS = 5;

// A Dropbox-style raw id behind the codec's type tag, and the codec's associated data.
const RAW_ID = 'id:6e7mtBeH4sAAAAAAAADLaA/Projects/2026/report-final.pdf';
const PLAINTEXT = Buffer.concat([Buffer.from([4]), Buffer.from('file'), Buffer.from(RAW_ID)]);
const AAD = encodeAad(['cloudmux/id', Uint8Array.of(1), 'dropbox', '1234567']);

const key32 = randomBytes(32);
const key64 = randomBytes(64);
const fixedNonce = Buffer.alloc(12);
const sivKey = sivKeyFrom(key64);

/** Each candidate: encrypt(pt) → bytes, decrypt(bytes) → pt (throws / returns null when not authentic). */
const candidates = {
  'node aes-256-gcm random IV (baseline)': {
    encrypt(pt) {
      const iv = randomBytes(12);
      const c = createCipheriv('aes-256-gcm', key32, iv);
      c.setAAD(AAD);
      const body = Buffer.concat([c.update(pt), c.final()]);
      return Buffer.concat([iv, body, c.getAuthTag()]);
    },
    decrypt(ct) {
      const d = createDecipheriv('aes-256-gcm', key32, ct.subarray(0, 12));
      d.setAAD(AAD);
      d.setAuthTag(ct.subarray(ct.length - 16));
      return Buffer.concat([d.update(ct.subarray(12, ct.length - 16)), d.final()]);
    },
    deterministic: false,
  },
  'noble aessiv (RFC 5297 AES-256-SIV)': {
    encrypt: (pt) => aessiv(key64, AAD).encrypt(pt),
    decrypt: (ct) => aessiv(key64, AAD).decrypt(ct),
    deterministic: true,
  },
  'noble gcmsiv (RFC 8452, fixed nonce)': {
    encrypt: (pt) => gcmsiv(key32, fixedNonce, AAD).encrypt(pt),
    decrypt: (ct) => gcmsiv(key32, fixedNonce, AAD).decrypt(ct),
    deterministic: true,
  },
  'node HMAC-SHA256-SIV + AES-256-CTR': {
    encrypt: (pt) => sivSeal(sivKey, AAD, pt),
    decrypt: (ct) => sivOpen(sivKey, AAD, ct),
    deterministic: true,
  },
  'node HMAC-SHA256-SIV + AES-256-GCM': {
    // IV = HMAC(aad ‖ pt)[:12] used as the GCM nonce; decrypt verifies the tag, then recomputes the IV.
    encrypt(pt) {
      const iv = createHmac('sha256', sivKey.mac).update(AAD).update(pt).digest().subarray(0, 12);
      const c = createCipheriv('aes-256-gcm', sivKey.enc, iv);
      c.setAAD(AAD);
      const body = Buffer.concat([c.update(pt), c.final()]);
      return Buffer.concat([iv, body, c.getAuthTag()]);
    },
    decrypt(ct) {
      const iv = ct.subarray(0, 12);
      const d = createDecipheriv('aes-256-gcm', sivKey.enc, iv);
      d.setAAD(AAD);
      d.setAuthTag(ct.subarray(ct.length - 16));
      const pt = Buffer.concat([d.update(ct.subarray(12, ct.length - 16)), d.final()]);
      const expected = createHmac('sha256', sivKey.mac).update(AAD).update(pt).digest().subarray(0, 12);
      return timingSafeEqual(expected, iv) ? pt : null;
    },
    deterministic: true,
  },
};

// The shipped codec end to end (validation, base64url, key lookup), cache off so every call encrypts.
const keys = Keyring.fromSecret(randomBytes(32));
const ctx = { accountId: 1234567, service: 'dropbox' };
const codecNoCache = createIdCodec({ keys, cacheSize: 0 });
const sampleId = codecNoCache.encode({ ...ctx, type: 'file', rawId: RAW_ID });
const decodeOptions = { accountId: ctx.accountId, service: ctx.service, type: 'file' };
const codecOps = {
  encrypt: () =>
    codecNoCache.encode({ accountId: ctx.accountId, service: ctx.service, type: 'file', rawId: RAW_ID }),
  decrypt: () => codecNoCache.decode(sampleId, decodeOptions),
};

// Sanity before timing: round trips, determinism, and rejection of a flipped bit.
for (const [name, c] of Object.entries(candidates)) {
  const a = c.encrypt(PLAINTEXT);
  const back = c.decrypt(a);
  if (!back || !Buffer.from(back).equals(PLAINTEXT)) throw new Error(`${name}: round trip failed`);
  if (c.deterministic && !Buffer.from(c.encrypt(PLAINTEXT)).equals(Buffer.from(a))) {
    throw new Error(`${name}: not deterministic`);
  }
  const bad = Buffer.from(a);
  bad[bad.length >> 1] ^= 1;
  let rejected = false;
  try {
    rejected = c.decrypt(bad) === null;
  } catch {
    rejected = true;
  }
  if (!rejected) throw new Error(`${name}: accepted a tampered ciphertext`);
}
if (codecOps.decrypt() !== RAW_ID) throw new Error('codec round trip failed');

function opsPerSecond(fn, arg) {
  // Size the batch to about BATCH_MS, then time one batch.
  let n = 256;
  for (;;) {
    const t0 = process.hrtime.bigint();
    for (let i = 0; i < n; i++) fn(arg);
    const ms = Number(process.hrtime.bigint() - t0) / 1e6;
    if (ms >= BATCH_MS) return (n / ms) * 1000;
    n = Math.ceil(n * Math.min(16, Math.max(2, (BATCH_MS * 1.1) / Math.max(ms, 0.01))));
  }
}

const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
};

const cases = [];
for (const [name, c] of Object.entries(candidates)) {
  const sealed = c.encrypt(PLAINTEXT);
  cases.push({ name, op: 'encode', fn: c.encrypt, arg: PLAINTEXT });
  cases.push({ name, op: 'decode', fn: c.decrypt, arg: sealed });
}
const CODEC = '@cloudmux/core createIdCodec (no cache)';
cases.push({ name: CODEC, op: 'encode', fn: codecOps.encrypt });
cases.push({ name: CODEC, op: 'decode', fn: codecOps.decrypt });
const BASELINE = Object.keys(candidates)[0];

// Warm-up: JIT and OpenSSL contexts.
for (const c of cases) for (let i = 0; i < 5000; i++) c.fn(c.arg);

const samples = new Map(cases.map((c) => [`${c.name}|${c.op}`, []]));
const ratios = new Map(cases.map((c) => [`${c.name}|${c.op}`, []]));
for (let round = 0; round < ROUNDS; round++) {
  // Rotate the order each round so no candidate always runs first (or right after GC pressure).
  const order = cases.map((_, i) => cases[(i + round) % cases.length]);
  const thisRound = new Map();
  for (const c of order) thisRound.set(`${c.name}|${c.op}`, opsPerSecond(c.fn, c.arg));
  for (const c of cases) {
    const k = `${c.name}|${c.op}`;
    samples.get(k).push(thisRound.get(k));
    ratios.get(k).push(thisRound.get(k) / thisRound.get(`${BASELINE}|${c.op}`));
  }
  process.stderr.write(`round ${round + 1}/${ROUNDS}\n`);
}

// Listing case: one folder decode + (id, parent id) encodes for 1,000 items, through `codec.bind`
// (the listing path: the account and service are validated and prepared once).
const listing = Array.from(
  { length: LISTING_ITEMS },
  (_, i) => `id:${randomBytes(16).toString('base64url')}/item-${i}`,
);
const parentRaw = 'id:6e7mtBeH4sAAAAAAAADLaA';
function listOnce(codec, folderId) {
  const ids = codec.bind(ctx);
  const parent = ids.decode(folderId, 'folder');
  let total = 0;
  for (const raw of listing) {
    total += ids.encode('file', raw).length;
    total += ids.encode('folder', parent).length;
  }
  return total;
}
function timeListing(make, warm, reps = 25) {
  const times = [];
  for (let r = 0; r < reps; r++) {
    const codec = make();
    const folderId = codec.encode({ ...ctx, type: 'folder', rawId: parentRaw });
    if (!warm) codec.clearCache();
    else listOnce(codec, folderId);
    const t0 = process.hrtime.bigint();
    listOnce(codec, folderId);
    times.push(Number(process.hrtime.bigint() - t0) / 1e6);
  }
  return median(times);
}
// Warm-up for the listing loop itself.
timeListing(() => createIdCodec({ keys, cacheSize: 0 }), false, 3);
const listingRows = [
  ['no cache', timeListing(() => createIdCodec({ keys, cacheSize: 0 }), false)],
  ['cache, cold (first listing; parent id hits)', timeListing(() => createIdCodec({ keys }), false)],
  ['cache, warm (same folder listed again)', timeListing(() => createIdCodec({ keys }), true)],
];

// Report.
const fmt = (n) => Math.round(n).toLocaleString('en-US');
/** Prints rows under a header; the first column is left-aligned, the others right-aligned. */
function table(header, rows, widths) {
  const line = (cells) =>
    cells.map((c, i) => (i === 0 ? String(c).padEnd(widths[i]) : String(c).padStart(widths[i])));
  console.log(line(header).join(''));
  console.log('-'.repeat(widths.reduce((a, b) => a + b, 0)));
  for (const row of rows) console.log(line(row).join(''));
}

const { version: node, versions } = process;
console.log(
  `\nbench/ids — Node ${node}, OpenSSL ${versions.openssl}, ${ROUNDS} rounds × ~${BATCH_MS} ms per batch`,
);
console.log(
  `plaintext ${PLAINTEXT.length} B (type tag + ${RAW_ID.length}-char raw id), AAD ${AAD.length} B\n`,
);
const rows = [...Object.keys(candidates), CODEC].map((name) => ({
  name,
  encode: median(samples.get(`${name}|encode`)),
  encodeRatio: median(ratios.get(`${name}|encode`)),
  decode: median(samples.get(`${name}|decode`)),
  decodeRatio: median(ratios.get(`${name}|decode`)),
}));
table(
  ['candidate', 'encode ops/s', '× base', 'decode ops/s', '× base'],
  rows.map((r) => [r.name, fmt(r.encode), r.encodeRatio.toFixed(2), fmt(r.decode), r.decodeRatio.toFixed(2)]),
  [42, 14, 8, 14, 8],
);
console.log('\n× base = median over rounds of (candidate ops/s ÷ baseline ops/s in the same round)\n');

table(
  [`listing: ${LISTING_ITEMS} items, id + parent id each`, 'ms', `< ${TARGET_LISTING_MS} ms`],
  listingRows.map(([label, ms]) => [label, ms.toFixed(2), ms < TARGET_LISTING_MS ? 'yes' : 'NO']),
  [46, 10, 10],
);
const codecEnc = rows.find((r) => r.name === CODEC).encode;
const met = codecEnc >= TARGET_ENCODES_PER_S ? 'met' : 'NOT met';
console.log(`\ncodec encodes/s (no cache): ${fmt(codecEnc)} — target ≥ ${fmt(TARGET_ENCODES_PER_S)}: ${met}`);
if (process.env.BENCH_JSON) {
  console.log(JSON.stringify({ node, rounds: ROUNDS, rows, listing: Object.fromEntries(listingRows) }));
}
