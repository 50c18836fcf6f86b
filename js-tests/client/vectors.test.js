// The protocol's test vectors (testdata/crypto-v1.json), reproduced in
// real headless Chromium with WebCrypto through bm-crypto.js: key
// derivations, envelopes (opened by the same function the client uses,
// must_fail ones refused), token signatures and push signatures.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import fs from 'node:fs';
import path from 'node:path';

import { ROOT, VECTORS, cleanup, launchBrowser, openPage, startPageServer } from './harness.js';

const MULTISITE = JSON.parse(fs.readFileSync(path.join(ROOT, 'testdata/multisite-v1.json'), 'utf8'));
const PSEUDONYMS = JSON.parse(fs.readFileSync(path.join(ROOT, 'testdata/pseudonyms-v2.json'), 'utf8'));

let page;

before(async () => {
  const server = await startPageServer();
  const context = await launchBrowser();
  page = await openPage(context, `${server.origin}/tests/client/blank.html`);
});

after(cleanup);

test('HKDF: relay, content, thread and user keys of every site', async () => {
  const results = await page.evaluate(async (sites) => {
    const c = await import('/assets/bm-crypto.js');
    const out = [];
    for (const s of sites) {
      const { relayKey, contentKey } = await c.deriveSiteKeys(s.secret);
      out.push({ what: `${s.site} relay`, got: c.b64uEncode(relayKey), want: s.relay_key });
      out.push({ what: `${s.site} content`, got: c.b64uEncode(contentKey), want: s.content_key });
      for (const t of s.thread_keys) {
        const key = await c.deriveThreadKey(contentKey, t.thread, t.epoch);
        out.push({ what: `${s.site} ${t.kid}`, got: c.b64uEncode(key), want: t.key });
        const parsed = c.parseKeyId(t.kid);
        out.push({ what: `${s.site} parse ${t.kid}`, got: JSON.stringify(parsed), want: JSON.stringify({ kind: 'thread', thread: t.thread, epoch: t.epoch }) });
      }
      for (const u of s.user_keys) {
        const key = await c.deriveUserKey(contentKey, u.user);
        out.push({ what: `${s.site} ${u.kid}`, got: c.b64uEncode(key), want: u.key });
      }
    }
    return out;
  }, VECTORS.sites);
  assert.equal(results.length, VECTORS.sites.reduce((n, s) => n + 2 + 2 * s.thread_keys.length + s.user_keys.length, 0));
  for (const r of results) assert.equal(r.got, r.want, r.what);
});

test('multisite (PROTOCOL.md §3.1): blog secrets, then relay, content, thread and user keys of each blog', async () => {
  const results = await page.evaluate(async (networks) => {
    const c = await import('/assets/bm-crypto.js');
    const out = [];
    for (const net of networks) {
      for (const b of net.blogs) {
        const blogSecret = c.b64uEncode(await c.hkdf32(c.b64uDecode(net.network_secret), b.info));
        out.push({ what: `${net.name} ${b.info}`, got: blogSecret, want: b.blog_secret });
        const { relayKey, contentKey } = await c.deriveSiteKeys(blogSecret);
        out.push({ what: `${net.name} blog ${b.blog} relay`, got: c.b64uEncode(relayKey), want: b.relay_key });
        out.push({ what: `${net.name} blog ${b.blog} content`, got: c.b64uEncode(contentKey), want: b.content_key });
        out.push({ what: `${net.name} blog ${b.blog} t/1/0`, got: c.b64uEncode(await c.deriveThreadKey(contentKey, 1, 0)), want: b.thread_key.key });
        out.push({ what: `${net.name} blog ${b.blog} u/1`, got: c.b64uEncode(await c.deriveUserKey(contentKey, 1)), want: b.user_key.key });
      }
    }
    return out;
  }, MULTISITE.networks);
  assert.equal(results.length, 12 * 5);
  for (const r of results) assert.equal(r.got, r.want, r.what);
});

test('protocol v2 (PROTOCOL.md §3.2): pseudonyms, HKDF of the pseudonymous key ids, v2 envelopes open, v2 token claims', async () => {
  const results = await page.evaluate(async (sites) => {
    const c = await import('/assets/bm-crypto.js');
    const out = [];
    const m = 2n ** 53n - 1n;
    for (const s of sites) {
      const secret = c.b64uDecode(s.site_secret);
      const pkey = await c.hkdf32(secret, 'pseudonym');
      out.push({ what: `${s.name} pseudonym key`, got: c.b64uEncode(pkey), want: s.pseudonym_key });
      const pseudonym = async (kind, id) => {
        const mac = await c.hmacSha256(pkey, `${kind}/${id}`);
        const hi = new DataView(mac.buffer).getBigUint64(0, false);
        return Number(1n + (hi % m));
      };
      const { contentKey } = await c.deriveSiteKeys(s.site_secret);
      for (const u of s.users) {
        out.push({ what: `${s.name} user ${u.user}`, got: String(await pseudonym('user', BigInt(u.user))), want: String(u.pseudonym) });
        out.push({ what: `${s.name} ${u.kid}`, got: c.b64uEncode(await c.deriveUserKey(contentKey, u.pseudonym)), want: u.key });
      }
      for (const t of s.threads) {
        out.push({ what: `${s.name} thread ${t.thread}`, got: String(await pseudonym('thread', BigInt(t.thread))), want: String(t.pseudonym) });
        const kid = c.parseKeyId(t.kid);
        out.push({ what: `${s.name} ${t.kid}`, got: c.b64uEncode(await c.deriveThreadKey(contentKey, kid.thread, kid.epoch)), want: t.key });
      }
      for (const e of s.envelopes) {
        const opened = await c.openEnvelope(e.envelope, c.b64uDecode(e.key), s.site);
        out.push({ what: `${s.name} open ${e.kid}`, got: JSON.stringify([opened.k, opened.type, opened.data]), want: JSON.stringify([e.kid, ...Object.values(JSON.parse(e.plaintext))]) });
      }
      for (const t of s.tokens) {
        const claims = c.readTokenClaims(t.token);
        out.push({ what: `${s.name} token claims`, got: JSON.stringify(claims), want: JSON.stringify(t.claims) });
        const [h, b, sig] = t.token.split('.');
        const relayKey = (await c.deriveSiteKeys(s.site_secret)).relayKey;
        out.push({ what: `${s.name} token signature`, got: c.b64uEncode(await c.hmacSha256(relayKey, `${h}.${b}`)), want: sig });
      }
    }
    return out;
  }, PSEUDONYMS.sites);
  assert.equal(results.length, PSEUDONYMS.sites.reduce((n, s) => n + 1 + 2 * (s.users.length + s.threads.length) + s.envelopes.length + 2 * s.tokens.length, 0));
  for (const r of results) assert.equal(r.got, r.want, r.what);
});

test('envelopes: every vector opens to its plaintext, every must_fail is refused', async () => {
  const results = await page.evaluate(async (envs) => {
    const c = await import('/assets/bm-crypto.js');
    const out = [];
    for (const v of envs) {
      const { contentKey } = await c.deriveSiteKeys(v.secret);
      const kid = c.parseKeyId(v.envelope.k);
      const key = kid.kind === 'thread' ? await c.deriveThreadKey(contentKey, kid.thread, kid.epoch) : await c.deriveUserKey(contentKey, kid.user);
      const aad = new TextDecoder().decode(c.envelopeAad(v.site, v.envelope.id, v.envelope.k));
      try {
        const opened = await c.openEnvelope(v.envelope, key, v.site);
        out.push({ id: v.envelope.id, k: v.envelope.k, mustFail: !!v.must_fail, ok: true, aad, opened });
      } catch (e) {
        out.push({ id: v.envelope.id, k: v.envelope.k, mustFail: !!v.must_fail, ok: false, aad, reason: e.reason });
      }
    }
    return out;
  }, VECTORS.envelopes);
  assert.equal(results.length, VECTORS.envelopes.length);
  assert.ok(results.some((r) => r.mustFail), 'the vectors include must_fail cases');
  results.forEach((r, i) => {
    const v = VECTORS.envelopes[i];
    if (v.must_fail) {
      assert.equal(r.ok, false, `must_fail envelope ${r.id} (${r.k}) was opened`);
      assert.equal(r.reason, 'open_failed');
    } else {
      assert.equal(r.ok, true, `envelope ${r.id} did not open: ${r.reason}`);
      assert.equal(r.aad, v.aad);
      const want = JSON.parse(v.plaintext);
      assert.equal(r.opened.type, want.type);
      assert.deepEqual(r.opened.data, want.data);
      assert.equal(r.opened.id, v.envelope.id);
    }
  });
});

test('envelopes: sealed in the browser, they open again, and any moved or altered part fails', async () => {
  const r = await page.evaluate(async (v) => {
    const c = await import('/assets/bm-crypto.js');
    const { contentKey } = await c.deriveSiteKeys(v.secret);
    const key = await c.deriveThreadKey(contentKey, 12, 0);
    const env = await c.sealEnvelope(key, v.site, 't/12/0', 'typing', { thread: 12, on: true });
    const back = await c.openEnvelope(env, key, v.site);
    const attempt = async (e, site = v.site) => {
      try {
        await c.openEnvelope(e, key, site);
        return 'opened';
      } catch (err) {
        return err.reason;
      }
    };
    const flip = (s) => (s[5] === 'A' ? s.slice(0, 5) + 'B' + s.slice(6) : s.slice(0, 5) + 'A' + s.slice(6));
    return {
      idLen: env.id.length,
      back,
      otherSite: await attempt(env, 'other.site'),
      otherId: await attempt({ ...env, id: 'AAAAAAAAAAAAAAAAAAAAAA' }),
      otherKid: await attempt({ ...env, k: 't/12/1' }),
      flippedC: await attempt({ ...env, c: flip(env.c) }),
      flippedN: await attempt({ ...env, n: flip(env.n) }),
      extraField: await attempt({ ...env, x: 1 }),
      nonCanonicalKid: await attempt({ ...env, k: 't/012/0' }),
      badB64: await attempt({ ...env, c: env.c + '=' }),
      version2: await attempt({ ...env, v: 2 }),
    };
  }, VECTORS.sites[0]);
  assert.equal(r.idLen, 22);
  assert.equal(r.back.type, 'typing');
  assert.deepEqual(r.back.data, { thread: 12, on: true });
  assert.equal(r.otherSite, 'open_failed');
  assert.equal(r.otherId, 'open_failed');
  assert.equal(r.otherKid, 'open_failed');
  assert.equal(r.flippedC, 'open_failed');
  assert.equal(r.flippedN, 'open_failed');
  assert.equal(r.extraField, 'malformed');
  assert.equal(r.nonCanonicalKid, 'malformed');
  assert.equal(r.badB64, 'malformed');
  assert.equal(r.version2, 'malformed');
});

test('tokens: HS256 over header.payload with the relay key equals each vector signature', async () => {
  const results = await page.evaluate(async (tokens) => {
    const c = await import('/assets/bm-crypto.js');
    const out = [];
    for (const t of tokens) {
      const [h, p, s] = t.token.split('.');
      const sig = await c.hmacSha256(c.b64uDecode(t.relay_key), `${h}.${p}`);
      out.push({ got: c.b64uEncode(sig), want: s, claims: c.readTokenClaims(t.token), header: JSON.parse(new TextDecoder().decode(c.b64uDecode(h))) });
    }
    return out;
  }, VECTORS.tokens);
  assert.equal(results.length, VECTORS.tokens.length);
  results.forEach((r, i) => {
    assert.equal(r.got, r.want, `token ${i} signature`);
    assert.deepEqual(r.claims, VECTORS.tokens[i].claims);
    assert.deepEqual(r.header, { alg: 'HS256', typ: 'JWT' });
  });
});

test('push signatures: HMAC-SHA256 of "{ts}\\n{site}\\n{METHOD} {path}\\n{body}" equals each header', async () => {
  const results = await page.evaluate(async (sigs) => {
    const c = await import('/assets/bm-crypto.js');
    const hex = (u8) => [...u8].map((b) => b.toString(16).padStart(2, '0')).join('');
    const out = [];
    for (const s of sigs) {
      const mac = await c.hmacSha256(c.b64uDecode(s.relay_key), `${s.timestamp}\n${s.site}\n${s.method} ${s.path}\n${s.body}`);
      out.push(`v1=${hex(mac)}`);
    }
    return out;
  }, VECTORS.push_signatures);
  assert.equal(results.length, VECTORS.push_signatures.length);
  results.forEach((got, i) => assert.equal(got, VECTORS.push_signatures[i].header, `push signature ${i}`));
});

test('base64url decoding is strict', async () => {
  const r = await page.evaluate(async () => {
    const c = await import('/assets/bm-crypto.js');
    const tryDecode = (s) => {
      try {
        return c.b64uEncode(c.b64uDecode(s));
      } catch {
        return null;
      }
    };
    return { ok: tryDecode('AQID'), padded: tryDecode('AQ=='), plus: tryDecode('a+b/'), badTail: tryDecode('AR'), len1: tryDecode('A'), empty: tryDecode('') };
  });
  assert.deepEqual(r, { ok: 'AQID', padded: null, plus: null, badTail: null, len1: null, empty: '' });
  assert.deepEqual(page.errors, []);
});
