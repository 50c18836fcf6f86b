// bm-client.js in headless Chromium against the real relay binary on
// 127.0.0.1. The harness plays WordPress: it mints tokens with the relay
// key, hands out keys to members, stores sealed events for catch-up, and
// pushes them to the relay with signed requests.

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { after, before, test } from 'node:test';

import { RELAY_BIN, b64u, cleanup, freePort, launchBrowser, makeSite, mintToken, openPage, relayPost, seal, sleep, startPageServer, startRelay } from './harness.js';

const SITE = makeSite('client-test.local');
const THREAD = 12;

/** The stand-in WordPress: what it knows and what it was asked. */
const wp = {
  members: { [THREAD]: [1, 2, 3] },
  /** per user: 'ok' (fresh token each time), 'same' (the last one again), 'fail' (HTTP 403) */
  tokenMode: {},
  /** seconds a connection token lives */
  tokenLife: {},
  lastToken: {},
  tokenRequests: {},
  /** sealed events each user's catch-up returns */
  stored: {},
  catchupRequests: {},
  pollRequests: {},
  /** per user: mint thread tokens for this other user instead */
  threadTokenOf: {},
  /** per user: hand out one expired thread token next */
  staleThreadToken: {},
  threadTokenRequests: {},
  reset() {
    this.threadTokenOf = {};
    this.staleThreadToken = {};
    this.threadTokenRequests = {};
    this.tokenMode = {};
    this.tokenLife = {};
    this.lastToken = {};
    this.tokenRequests = {};
    this.stored = {};
    this.catchupRequests = {};
    this.pollRequests = {};
  },
};

const forbidden = (msg) => Object.assign(new Error(msg), { status: 403 });

/**
 * What the relay revoked, as WordPress remembers it ("user" or
 * "user/thread" → unix second). Not reset between tests: the relay keeps
 * its revocations too. PROTOCOL.md §6: tokens of a scope revoked at t carry
 * iat > t.
 */
const revokedAt = {};
const notBefore = (...keys) => Math.max(Math.floor(Date.now() / 1000), ...keys.map((k) => (revokedAt[k] ?? -1) + 1));

/** POST /v1/disconnect as WordPress does it: the revocation is recorded first. */
async function disconnect(body) {
  // One second ahead: the request's signed timestamp is at most that.
  const t = Math.floor(Date.now() / 1000) + 1;
  for (const u of body.users) revokedAt[body.thread ? `${u}/${body.thread}` : `${u}`] = t;
  return relayPost(relay.port, SITE.site, SITE.relayKey, '/v1/disconnect', body);
}

const routes = {
  '/wp/token': (url) => {
    const user = Number(url.searchParams.get('user'));
    wp.tokenRequests[user] = (wp.tokenRequests[user] || 0) + 1;
    const mode = wp.tokenMode[user] || 'ok';
    if (mode === 'fail') throw forbidden('not logged in');
    if (mode === 'same' && wp.lastToken[user]) return { token: wp.lastToken[user] };
    // As WordPress does (PROTOCOL.md §6): after revoking a user at second
    // t, its tokens carry iat > t (the relay refuses iat <= t).
    const iat = notBefore(`${user}`);
    let exp = iat + (wp.tokenLife[user] || 3600);
    let token = mintToken(SITE.relayKey, { site: SITE.site, sub: user, iat, exp });
    // Two tokens minted in one second would be equal: a real WordPress
    // hands out a new one, so make it differ by a second of lifetime.
    while (token === wp.lastToken[user]) token = mintToken(SITE.relayKey, { site: SITE.site, sub: user, iat, exp: ++exp });
    wp.lastToken[user] = token;
    return { token };
  },
  '/wp/thread-token': (url) => {
    const user = Number(url.searchParams.get('user'));
    const thread = Number(url.searchParams.get('thread'));
    const now = Math.floor(Date.now() / 1000);
    // A buggy or hostile page could present another user's thread token.
    if (wp.threadTokenOf[user]) return { token: mintToken(SITE.relayKey, { site: SITE.site, sub: wp.threadTokenOf[user], thread, iat: now, exp: now + 3600 }) };
    if (!(wp.members[thread] || []).includes(user)) throw forbidden('not a member');
    wp.threadTokenRequests[user] = (wp.threadTokenRequests[user] || 0) + 1;
    if (wp.staleThreadToken[user]) {
      // A token from an old cached bundle: expired a minute ago.
      wp.staleThreadToken[user] = false;
      return { token: mintToken(SITE.relayKey, { site: SITE.site, sub: user, thread, iat: now - 3660, exp: now - 60 }) };
    }
    const iat = notBefore(`${user}`, `${user}/${thread}`);
    return { token: mintToken(SITE.relayKey, { site: SITE.site, sub: user, thread, iat, exp: iat + 3600 }) };
  },
  '/wp/key': (url) => {
    const user = Number(url.searchParams.get('user'));
    const kid = url.searchParams.get('kid');
    const m = /^t\/(\d+)\/(\d+)$/.exec(kid);
    if (m && (wp.members[Number(m[1])] || []).includes(user)) return { key: b64u(SITE.keyFor(kid)) };
    if (kid === `u/${user}`) return { key: b64u(SITE.keyFor(kid)) };
    throw forbidden('no such key for this user');
  },
  '/wp/catchup': (url) => {
    const user = Number(url.searchParams.get('user'));
    const counter = url.searchParams.get('poll') ? wp.pollRequests : wp.catchupRequests;
    counter[user] = (counter[user] || 0) + 1;
    return { events: wp.stored[user] || [] };
  },
};

let relay;
let server;
let context;

before(async () => {
  relay = await startRelay({ site: SITE.site, relayKey: SITE.relayKey });
  server = await startPageServer(routes);
  context = await launchBrowser();
});

after(cleanup);

/** "WordPress stores a message": seal it with the user's key (or the thread's), keep it for catch-up. */
function store(users, { kid, type, data }) {
  const e = seal(SITE.site, SITE.keyFor(kid), kid, type, data);
  for (const u of users) (wp.stored[u] ||= []).push(e);
  return e;
}

async function push(events) {
  const r = await relayPost(relay.port, SITE.site, SITE.relayKey, '/v1/push', { events });
  assert.equal(r.status, 200, `push: ${JSON.stringify(r.body)}`);
  return r.body;
}

/** A chat page of `user` with a connected client (and the thread subscribed when asked). */
async function pageFor(user, { opts = {}, subscribe = false, websocket, poll } = {}) {
  const page = await openPage(context, `${server.origin}/tests/client/client.html`);
  await page.waitForFunction(() => typeof window.setupClient === 'function');
  await page.evaluate((cfg) => window.setupClient(cfg), { user, url: relay.wsUrl, site: SITE.site, opts, websocket, poll });
  if (websocket !== false) {
    await page.evaluate(() => window.client.connect());
    await page.waitForFunction(() => window.client.state === 'connected', null, { timeout: 5000 });
    if (subscribe) await page.evaluate((t) => window.client.subscribe(t), THREAD);
  }
  return page;
}

const logOf = (page) => page.evaluate(() => window.bmLog);
const statsOf = (page) => page.evaluate(() => window.client.stats);

test('a push to the user arrives opened and is shown once', async () => {
  wp.reset();
  const page = await pageFor(2);
  await page.waitForFunction(() => window.bmLog.catchups.length > 0, null, { timeout: 3000 });
  const log0 = await logOf(page);
  assert.deepEqual(log0.ready.map((r) => r.user), [2]);
  assert.deepEqual(log0.catchups, [{ reconnect: false, since: null }], 'catch-up runs after the first connect too');

  const e = store([2], { kid: 'u/2', type: 'message.new', data: { id: 77, thread: THREAD, text: 'Hello, Bob' } });
  const res = await push([{ to: [2], e }]);
  assert.deepEqual(res.results[0].online, [2]);

  await page.waitForSelector(`li[data-id="${e.id}"]`, { timeout: 3000 });
  await sleep(300);
  const items = await page.locator('#log li').allTextContents();
  assert.deepEqual(items, ['message.new: {"id":77,"thread":12,"text":"Hello, Bob"}']);
  const log = await logOf(page);
  assert.equal(log.events.length, 1);
  assert.equal(log.events[0].source, 'ws');
  assert.deepEqual(log.dropped, []);
  assert.deepEqual(page.errors, []);
  await page.close();
});

test('typing via pub reaches the other member with `from`, not the sender', async () => {
  wp.reset();
  const alice = await pageFor(1, { subscribe: true });
  const bob = await pageFor(2, { subscribe: true });
  const id = await alice.evaluate((t) => window.client.publish(t, 'typing', { thread: t, on: true }), THREAD);
  assert.match(id, /^[A-Za-z0-9_-]{22}$/);
  await bob.waitForFunction(() => window.bmLog.hints.length > 0, null, { timeout: 3000 });
  const hint = (await logOf(bob)).hints[0];
  assert.deepEqual({ ...hint }, { id, kid: `t/${THREAD}/0`, thread: THREAD, from: 1, type: 'typing', data: { thread: THREAD, on: true } });
  // A hint is never shown as a stored message.
  assert.equal(await bob.locator('#log li').count(), 0);
  await sleep(300);
  assert.deepEqual((await logOf(alice)).hints, [], 'the sender does not get its own pub back');

  // A thread push reaches both subscribers; the server can revoke Bob's subscription.
  const e = seal(SITE.site, SITE.keyFor(`t/${THREAD}/0`), `t/${THREAD}/0`, 'message.new', { id: 5, text: 'to the thread' });
  await push([{ to: [], thread: THREAD, e }]);
  await bob.waitForSelector(`li[data-id="${e.id}"]`, { timeout: 3000 });
  await alice.waitForSelector(`li[data-id="${e.id}"]`, { timeout: 3000 });
  const d = await disconnect({ users: [2], thread: THREAD });
  assert.equal(d.status, 200);
  await bob.waitForFunction(() => window.bmLog.unsubs.length > 0, null, { timeout: 3000 });
  assert.deepEqual((await logOf(bob)).unsubs, [{ thread: THREAD, reason: 'revoked' }]);
  assert.deepEqual(await bob.evaluate(() => window.client.threads), []);
  // Bob's publish now fails: not subscribed any more.
  const err = await bob.evaluate((t) => window.client.publish(t, 'typing', {}).then(() => null, (e) => e.code), THREAD);
  assert.equal(err, 'not_subscribed');
  await alice.close();
  await bob.close();
});

test('a member\'s pub cannot hide a server event: hints and server events are deduplicated apart', async () => {
  wp.reset();
  const alice = await pageFor(1, { subscribe: true });
  const bob = await pageFor(2, { subscribe: true });
  const kid = `t/${THREAD}/0`;
  // Alice (a member, with her own code) guesses the id of the next server
  // event and sends a hint with that id first, straight over her socket.
  const guessed = 'next-message-id';
  const hint = seal(SITE.site, SITE.keyFor(kid), kid, 'typing', { on: true }, guessed);
  await alice.evaluate(({ t, e }) => window.client._request({ op: 'pub', thread: t, e }), { t: THREAD, e: hint });
  await bob.waitForFunction(() => window.bmLog.hints.length > 0, null, { timeout: 3000 });
  assert.equal((await logOf(bob)).hints[0].id, guessed);
  // WordPress then pushes a real event with that id: Bob's page shows it.
  const e = seal(SITE.site, SITE.keyFor(kid), kid, 'message.new', { id: 9, text: 'not hidden' }, guessed);
  await push([{ to: [2], thread: THREAD, e }]);
  await bob.waitForSelector(`li[data-id="${guessed}"]`, { timeout: 3000 });
  const log = await logOf(bob);
  assert.deepEqual(log.events.map((x) => [x.id, x.type]), [[guessed, 'message.new']]);
  assert.equal((await statsOf(bob)).duplicates, 0);
  // Hints still dedupe among themselves: the same hint again is dropped.
  await alice.evaluate(({ t, e }) => window.client._request({ op: 'pub', thread: t, e }), { t: THREAD, e: hint });
  await bob.waitForFunction(() => window.client.stats.duplicates === 1, null, { timeout: 3000 });
  assert.equal((await logOf(bob)).hints.length, 1);
  await alice.close();
  await bob.close();
});

test('a non-member cannot subscribe: the thread token is refused and the thread is dropped', async () => {
  wp.reset();
  const eve = await pageFor(9);
  const err = await eve.evaluate((t) => window.client.subscribe(t).then(() => null, (e) => e.code), THREAD);
  assert.equal(err, 'token_refused');
  const log = await logOf(eve);
  assert.deepEqual(log.unsubs, [{ thread: THREAD, reason: 'token_refused' }]);
  // With a member's thread token the relay refuses it: wrong `sub`.
  wp.threadTokenOf[9] = 1;
  const err2 = await eve.evaluate((t) => window.client.subscribe(t).then(() => null, (e) => e.code), THREAD);
  assert.equal(err2, 'forbidden');
  assert.deepEqual(await eve.evaluate(() => window.client.threads), []);
  // The socket itself is unharmed.
  assert.equal(await eve.evaluate(() => window.client.state), 'connected');
  assert.ok((await eve.evaluate(() => window.client.ping())) >= 0);
  await eve.close();
});

test('duplicate event ids are delivered once; a tampered envelope is dropped and counted', async () => {
  wp.reset();
  const page = await pageFor(2);
  // The first catch-up answered before the event is stored: else it may
  // hand the event back too, one duplicate more than counted below.
  for (let i = 0; i < 100 && !wp.catchupRequests[2]; i++) await sleep(20);
  assert.equal(wp.catchupRequests[2], 1, 'the page caught up once after connecting');
  const e = store([2], { kid: 'u/2', type: 'message.new', data: { id: 1, text: 'once' } });
  // The same event twice in one request, then again in another request
  // (a replayed push), and once more from catch-up.
  await push([{ to: [2], e }, { to: [2], e }]);
  await push([{ to: [2], e }]);
  await page.waitForFunction(() => window.client.stats.received >= 3, null, { timeout: 3000 });
  // WordPress's catch-up hands the same envelope back.
  assert.equal(await page.evaluate((env) => window.client.ingest(env, 'catchup').then((ev) => ev), e), null);
  // Tampered: one character of the ciphertext changed; and an envelope
  // sealed for another site (the relay "moved" it).
  const flip = (s) => s.slice(0, 10) + (s[10] === 'A' ? 'B' : 'A') + s.slice(11);
  const tampered = { ...seal(SITE.site, SITE.keyFor('u/2'), 'u/2', 'message.new', { text: 'evil' }) };
  tampered.c = flip(tampered.c);
  const otherSite = seal('other.site', SITE.keyFor('u/2'), 'u/2', 'message.new', { text: 'moved' });
  await push([{ to: [2], e: tampered }, { to: [2], e: otherSite }]);
  await page.waitForFunction(() => window.client.stats.dropped >= 2, null, { timeout: 3000 });
  // And the genuine event once more after them: still a duplicate.
  await push([{ to: [2], e }]);
  await page.waitForFunction(() => window.client.stats.received >= 6, null, { timeout: 3000 });
  await sleep(200);

  const stats = await statsOf(page);
  assert.equal(stats.delivered, 1);
  assert.equal(stats.duplicates, 4);
  assert.equal(stats.dropped, 2);
  assert.deepEqual(await page.locator('#log li').allTextContents(), ['message.new: {"id":1,"text":"once"}']);
  const log = await logOf(page);
  const reasons = log.dropped.map((d) => `${d.id}:${d.reason}`);
  assert.ok(reasons.includes(`${tampered.id}:open_failed`), reasons.join());
  assert.ok(reasons.includes(`${otherSite.id}:open_failed`), reasons.join());
  await page.close();
});

test('token refresh before exp keeps the connection past the first token\'s expiry', async () => {
  wp.reset();
  wp.tokenLife[2] = 3;
  const page = await pageFor(2);
  const exp0 = (await logOf(page)).ready[0].exp;
  await sleep(Math.max(0, exp0 * 1000 - Date.now()) + 1500);
  const log = await logOf(page);
  assert.deepEqual(log.states, ['connecting', 'connected'], 'never disconnected');
  assert.ok(wp.tokenRequests[2] >= 3, `refreshed with new tokens (${wp.tokenRequests[2]} requests)`);
  assert.deepEqual(log.errors, []);
  // Still live: a push arrives on the same socket.
  const e = store([2], { kid: 'u/2', type: 'message.new', data: { text: 'after expiry' } });
  await push([{ to: [2], e }]);
  await page.waitForSelector(`li[data-id="${e.id}"]`, { timeout: 3000 });
  assert.equal(await page.evaluate(() => window.bmSockets), 1);
  await page.close();
});

test('WordPress unreachable at refresh time: the relay closes with 4009, the client reconnects with a new token later', async () => {
  wp.reset();
  wp.tokenLife[2] = 2;
  const page = await pageFor(2);
  wp.tokenMode[2] = 'fail';
  await page.waitForFunction(() => window.bmLog.states.includes('disconnected:4009'), null, { timeout: 6000 });
  const log = await logOf(page);
  assert.ok(log.errors.some((e) => /token refresh failed/.test(e.message)), JSON.stringify(log.errors));
  await sleep(300);
  assert.notEqual(await page.evaluate(() => window.client.state), 'closed', 'a failed token fetch after 4009 is retried, not final');
  wp.tokenMode[2] = 'ok';
  await page.waitForFunction(() => window.client.state === 'connected', null, { timeout: 8000 });
  assert.equal(await page.evaluate(() => window.bmLog.catchups.at(-1).reconnect), true);
  await page.close();
});

test('revoked (4003): no retry with the same token; a new token reconnects', async () => {
  wp.reset();
  wp.tokenMode[2] = 'same';
  const page = await pageFor(2);
  const d = await disconnect({ users: [2] });
  assert.equal(d.status, 200);
  await page.waitForFunction(() => window.client.state === 'closed', null, { timeout: 5000 });
  const log = await logOf(page);
  assert.ok(log.states.includes('disconnected:4003'), log.states.join());
  await sleep(1500);
  assert.equal(await page.evaluate(() => window.bmSockets), 1, 'no second socket with the refused token');
  // Once at once, and once more a second later: a token minted in the
  // revocation's second is refused, and WordPress returns the same one
  // within that second (PROTOCOL.md §6). Then the client gives up.
  assert.equal(wp.tokenRequests[2], 3, 'asked WordPress for a new token, and once more a second later');

  // The same again, but WordPress hands out a new token: the client reconnects.
  wp.tokenMode[3] = 'ok';
  const other = await pageFor(3);
  await disconnect({ users: [3] });
  await other.waitForFunction(() => window.bmLog.states.includes('disconnected:4003'), null, { timeout: 5000 });
  await other.waitForFunction(() => window.client.state === 'connected', null, { timeout: 5000 });
  assert.equal(await other.evaluate(() => window.bmSockets), 2);
  await page.close();
  await other.close();
});

test('a bad token (4001) with no new one to be had ends in `closed`', async () => {
  wp.reset();
  const page = await openPage(context, `${server.origin}/tests/client/client.html`);
  await page.waitForFunction(() => typeof window.setupClient === 'function');
  await page.evaluate((cfg) => window.setupClient(cfg), { user: 2, url: relay.wsUrl, site: SITE.site });
  // A token signed with the wrong key, then WordPress refuses to give another.
  wp.lastToken[2] = mintToken(Buffer.alloc(32, 7), { site: SITE.site, sub: 2, iat: Math.floor(Date.now() / 1000), exp: Math.floor(Date.now() / 1000) + 60 });
  wp.tokenMode[2] = 'same';
  await page.evaluate(() => window.client.connect());
  await page.waitForFunction(() => window.client.state === 'closed', null, { timeout: 5000 });
  const log = await logOf(page);
  assert.ok(log.states.includes('disconnected:4001'), log.states.join());
  assert.equal(await page.evaluate(() => window.bmSockets), 1);
  await page.close();
});

test('relay killed: disconnected, polling meanwhile, backoff reconnects, catch-up delivers what was missed', async () => {
  wp.reset();
  const opts = { fallbackAfter: 2, pollInterval: 400, backoffCap: 2000 };
  const page = await pageFor(2, { opts, subscribe: true });
  const first = store([2], { kid: 'u/2', type: 'message.new', data: { n: 1 } });
  await push([{ to: [2], e: first }]);
  await page.waitForSelector(`li[data-id="${first.id}"]`, { timeout: 3000 });

  await relay.stop();
  await page.waitForFunction(() => window.client.state !== 'connected', null, { timeout: 5000 });
  // While the relay is down WordPress stores two messages; the page gets
  // them by polling once the socket has failed twice.
  const second = store([2], { kid: 'u/2', type: 'message.new', data: { n: 2 } });
  await page.waitForFunction(() => window.client.polling, null, { timeout: 10000 });
  await page.waitForSelector(`li[data-id="${second.id}"]`, { timeout: 3000 });
  const third = store([2], { kid: `t/${THREAD}/0`, type: 'message.new', data: { n: 3 } });
  await page.waitForSelector(`li[data-id="${third.id}"]`, { timeout: 3000 });

  relay = await startRelay({ site: SITE.site, relayKey: SITE.relayKey, port: relay.port, adminPort: relay.adminPort });
  await page.waitForFunction(() => window.client.state === 'connected', null, { timeout: 10000 });
  await page.waitForFunction(() => window.bmLog.catchups.length >= 2, null, { timeout: 3000 });
  const log = await logOf(page);
  assert.equal(log.catchups[1].reconnect, true);
  assert.equal(typeof log.catchups[1].since, 'number');
  assert.equal(await page.evaluate(() => window.client.polling), false, 'polling stops once the socket is back');
  assert.deepEqual(log.polling, [true, false]);
  // The thread subscription was re-sent: a thread push arrives.
  const fourth = seal(SITE.site, SITE.keyFor(`t/${THREAD}/0`), `t/${THREAD}/0`, 'message.new', { n: 4 });
  await push([{ to: [], thread: THREAD, e: fourth }]);
  await page.waitForSelector(`li[data-id="${fourth.id}"]`, { timeout: 3000 });
  // Each message shown once, in order, whatever path it came by.
  await sleep(300);
  assert.deepEqual(await page.locator('#log li').allTextContents(), [1, 2, 3, 4].map((n) => `message.new: {"n":${n}}`));
  await page.close();
});

test('no WebSocket at all: the client polls WordPress', async () => {
  wp.reset();
  const page = await pageFor(2, { websocket: false, opts: { pollInterval: 300 } });
  await page.evaluate(() => window.client.connect());
  const e = store([2], { kid: 'u/2', type: 'message.new', data: { text: 'by polling' } });
  await page.waitForSelector(`li[data-id="${e.id}"]`, { timeout: 3000 });
  await page.waitForFunction(() => window.client.stats.polls >= 3, null, { timeout: 3000 });
  assert.equal(await page.evaluate(() => window.client.state), 'disconnected');
  assert.equal(await page.locator('#log li').count(), 1);
  await page.evaluate(() => window.client.close());
  const polls = await page.evaluate(() => window.client.stats.polls);
  await sleep(700);
  assert.equal(await page.evaluate(() => window.client.stats.polls), polls, 'close() stops polling');
  await page.close();
});

test('events sealed by the Rust side (`bm-relay push`) open in the browser: user key and thread key', async () => {
  wp.reset();
  const page = await pageFor(2, { subscribe: true });
  const run = (args) =>
    new Promise((resolve, reject) => {
      // The secret goes in on stdin, never on a command line.
      const child = spawn(RELAY_BIN, ['push', '--url', `http://127.0.0.1:${relay.port}`, '--site', SITE.site, '--secret', '-', ...args], {
        stdio: ['pipe', 'pipe', 'pipe'],
      });
      let out = '';
      let err = '';
      child.stdout.on('data', (d) => (out += d));
      child.stderr.on('data', (d) => (err += d));
      const timer = setTimeout(() => child.kill('SIGKILL'), 10000);
      child.on('exit', (code) => {
        clearTimeout(timer);
        code === 0 ? resolve(out) : reject(new Error(`bm-relay push exited ${code}: ${err}`));
      });
      child.stdin.end(SITE.secret + '\n');
    });
  await run(['--to', '2', '--type', 'message.new', '--data', '{"text":"sealed in Rust","n":1}']);
  await run(['--thread', String(THREAD), '--type', 'message.new', '--data', '{"text":"thread, sealed in Rust","n":2}']);
  await page.waitForFunction(() => window.bmLog.events.length >= 2, null, { timeout: 5000 });
  const log = await logOf(page);
  assert.deepEqual(
    log.events.map((e) => [e.kid, e.type, e.data]),
    [
      ['u/2', 'message.new', { text: 'sealed in Rust', n: 1 }],
      [`t/${THREAD}/0`, 'message.new', { text: 'thread, sealed in Rust', n: 2 }],
    ],
  );
  assert.deepEqual(log.dropped, []);
  await page.close();
});

test('a relay that stops answering (half-open socket) is noticed by pings; the client reconnects when it answers again', async () => {
  wp.reset();
  const page = await pageFor(2, { opts: { pingInterval: 300, requestTimeout: 700, backoffCap: 1000 } });
  process.kill(-relay.child.pid, 'SIGSTOP');
  try {
    await page.waitForFunction(() => window.bmLog.states.includes('disconnected:4000'), null, { timeout: 5000 });
  } finally {
    process.kill(-relay.child.pid, 'SIGCONT');
  }
  await page.waitForFunction(() => window.client.state === 'connected', null, { timeout: 8000 });
  await page.waitForFunction(() => window.bmLog.catchups.length >= 2, null, { timeout: 3000 });
  const e = store([2], { kid: 'u/2', type: 'message.new', data: { text: 'after the stall' } });
  await push([{ to: [2], e }]);
  await page.waitForSelector(`li[data-id="${e.id}"]`, { timeout: 3000 });
  await page.close();
});

test('relay shutting down (SIGTERM) closes with 1001 and a retry_ms hint; the client waits that long, then reconnects to the new relay', async () => {
  wp.reset();
  const page = await pageFor(2, { subscribe: true, opts: { backoffCap: 1000 } });
  const socketsBefore = await page.evaluate(() => window.bmSockets);
  process.kill(relay.child.pid, 'SIGTERM');
  await page.waitForFunction(() => window.client.state !== 'connected', null, { timeout: 5000 });
  await relay.stop();
  const log = await logOf(page);
  assert.ok(log.states.includes('disconnected:1001'), log.states.join());
  assert.equal(log.retries.length, 1, JSON.stringify(log.retries));
  const { at, retryIn, reason } = log.retries[0];
  assert.match(reason, new RegExp(`retry_ms=${retryIn}$`));
  assert.ok(retryIn >= 1 && retryIn <= 1000, `one socket is told to come back within the relay's 1 s minimum window: ${retryIn}`);
  relay = await startRelay({ site: SITE.site, relayKey: SITE.relayKey, port: relay.port, adminPort: relay.adminPort });
  await page.waitForFunction(() => window.client.state === 'connected', null, { timeout: 8000 });
  // No attempt before the hint ran out: the first new socket came after it.
  assert.ok((await page.evaluate(() => window.bmSockets)) > socketsBefore);
  const firstTry = (await page.evaluate(() => window.bmSocketTimes)).find((t) => t >= at);
  assert.ok(firstTry >= at + retryIn - 5, `first new socket ${firstTry - at} ms after the close, hint ${retryIn} ms`);
  const e = seal(SITE.site, SITE.keyFor(`t/${THREAD}/0`), `t/${THREAD}/0`, 'message.new', { text: 'on the new relay' });
  await push([{ to: [], thread: THREAD, e }]);
  await page.waitForSelector(`li[data-id="${e.id}"]`, { timeout: 3000 });
  await page.close();
});

test('after the epoch bump a removed member cannot open new thread events; members fetch the new key', async () => {
  wp.reset();
  const bob = await pageFor(2, { subscribe: true });
  const carol = await pageFor(3, { subscribe: true });
  const before = seal(SITE.site, SITE.keyFor(`t/${THREAD}/0`), `t/${THREAD}/0`, 'message.new', { n: 1 });
  await push([{ to: [], thread: THREAD, e: before }]);
  await carol.waitForSelector(`li[data-id="${before.id}"]`, { timeout: 3000 });
  // WordPress removes Carol and moves the thread to epoch 1 (the relay has
  // not been told: her socket is still subscribed, the worst case).
  wp.members[THREAD] = [1, 2];
  try {
    const next = seal(SITE.site, SITE.keyFor(`t/${THREAD}/1`), `t/${THREAD}/1`, 'message.new', { n: 2 });
    await push([{ to: [], thread: THREAD, e: next }]);
    await bob.waitForSelector(`li[data-id="${next.id}"]`, { timeout: 3000 });
    await carol.waitForFunction(() => window.bmLog.dropped.length > 0, null, { timeout: 3000 });
    assert.deepEqual((await logOf(carol)).dropped, [{ id: next.id, kid: `t/${THREAD}/1`, reason: 'no_key', source: 'ws' }]);
    assert.equal(await carol.locator(`li[data-id="${next.id}"]`).count(), 0);
    // And she can no longer subscribe again (after a reconnect, say).
    await carol.evaluate((t) => window.client.unsubscribe(t), THREAD);
    const err = await carol.evaluate((t) => window.client.subscribe(t).then(() => null, (e) => e.code), THREAD);
    assert.equal(err, 'token_refused');
  } finally {
    wp.members[THREAD] = [1, 2, 3];
  }
  await bob.close();
  await carol.close();
});

test('unsubscribe stops a thread\'s hints and pushes for that page only', async () => {
  wp.reset();
  const alice = await pageFor(1, { subscribe: true });
  const bob = await pageFor(2, { subscribe: true });
  await alice.evaluate((t) => window.client.unsubscribe(t), THREAD);
  assert.deepEqual(await alice.evaluate(() => window.client.threads), []);
  await bob.evaluate((t) => window.client.publish(t, 'typing', { on: true }), THREAD);
  const e = seal(SITE.site, SITE.keyFor(`t/${THREAD}/0`), `t/${THREAD}/0`, 'message.new', { text: 'thread only' });
  await push([{ to: [], thread: THREAD, e }]);
  await bob.waitForSelector(`li[data-id="${e.id}"]`, { timeout: 3000 });
  await sleep(300);
  const log = await logOf(alice);
  assert.deepEqual(log.hints, []);
  assert.deepEqual(log.events, []);
  await alice.close();
  await bob.close();
});

test('a stale thread token (token_expired) is replaced once with a fresh one', async () => {
  wp.reset();
  const bob = await pageFor(2);
  wp.staleThreadToken[2] = true;
  await bob.evaluate((t) => window.client.subscribe(t), THREAD);
  assert.equal(wp.threadTokenRequests[2], 2);
  assert.deepEqual(await bob.evaluate(() => window.client.threads), [THREAD]);
  const e = seal(SITE.site, SITE.keyFor(`t/${THREAD}/0`), `t/${THREAD}/0`, 'message.new', { text: 'subscribed' });
  await push([{ to: [], thread: THREAD, e }]);
  await bob.waitForSelector(`li[data-id="${e.id}"]`, { timeout: 3000 });
  await bob.close();
});

test('presence over the socket: members subscribed to the thread, only for threads the page watches', async () => {
  wp.reset();
  const OTHER = 13;
  wp.members[OTHER] = [3];
  const alice = await pageFor(1, { subscribe: true });
  const bob = await pageFor(2, { subscribe: true });
  const carol = await pageFor(3);
  await carol.evaluate((t) => window.client.subscribe(t), OTHER);
  // Bob's page sees Alice and himself in the thread; it does not ask
  // about Carol's thread, which it does not watch (and the relay would
  // not answer it).
  const wpCalls = [];
  const onRequest = (r) => {
    if (new URL(r.url()).pathname.startsWith('/wp/')) wpCalls.push(r.url());
  };
  bob.on('request', onRequest);
  const seen = await bob.evaluate(async ([t, o]) => [...(await window.client.presence([t, o, t]))], [THREAD, OTHER]);
  bob.off('request', onRequest);
  assert.deepEqual(seen, [[THREAD, [1, 2]]]);
  assert.deepEqual(wpCalls, [], 'asked of the relay, not of WordPress');
  // Straight over the socket, a thread not subscribed is answered with
  // an error entry and nothing about its members.
  const raw = await bob.evaluate((o) => window.client._request({ op: 'presence', threads: [o] }), OTHER);
  assert.deepEqual(raw.threads, [{ thread: OTHER, error: 'not_subscribed' }]);
  // Alice leaves: Bob's next answer no longer lists her.
  await alice.close();
  await bob.waitForFunction(async (t) => {
    const m = await window.client.presence([t]);
    return JSON.stringify(m.get(t)) === '[2]';
  }, THREAD, { timeout: 3000, polling: 200 });
  // Not connected: a clear error, not a hang.
  await bob.evaluate(() => window.client.disconnect());
  assert.equal(await bob.evaluate((t) => window.client.presence([t]).then(() => null, (e) => e.code), THREAD), 'not_connected');
  assert.equal(await bob.evaluate(() => window.client.presence(['x']).then(() => null, (e) => e.name)), 'TypeError');
  assert.deepEqual(bob.errors, []);
  await bob.close();
  await carol.close();
  delete wp.members[OTHER];
});

test('several relay URLs: a dead one is skipped; when the node in use dies the page moves to the next', async () => {
  wp.reset();
  const dead = `ws://127.0.0.1:${await freePort()}/v1/ws`;
  const other = await startRelay({ site: SITE.site, relayKey: SITE.relayKey });
  const page = await pageFor(2, { opts: { urls: [dead, other.wsUrl, relay.wsUrl], backoffBase: 50, backoffCap: 200 } });
  assert.equal(await page.evaluate(() => window.client.url), other.wsUrl, 'the dead URL was tried, then the next');
  assert.equal(await page.evaluate(() => window.bmSockets), 2);
  await other.stop();
  await page.waitForFunction((u) => window.client.state === 'connected' && window.client.url === u, relay.wsUrl, { timeout: 5000 });
  // Caught up after the move, and live on the new node.
  await page.waitForFunction(() => window.bmLog.catchups.length >= 2, null, { timeout: 3000 });
  const e = store([2], { kid: 'u/2', type: 'message.new', data: { n: 'moved' } });
  await push([{ to: [2], e }]);
  await page.waitForSelector(`li[data-id="${e.id}"]`, { timeout: 3000 });
  const refused = await page.evaluate(() => {
    try {
      new window.client.constructor({ urls: ['ws://127.0.0.1:1/v1/ws', 5], site: 's', getToken: () => '', getKey: () => null });
      return null;
    } catch (x) {
      return `${x.name}: ${x.message}`;
    }
  });
  assert.equal(refused, 'TypeError: BmClient: `url` (or `urls`, a non-empty array of URLs) is required');
  await page.close();
});
