// The streaming fallback (PROTOCOL.md §6.1) of bm-client.js in headless
// Chromium against the real relay: a proxy in front of the relay refuses
// every WebSocket upgrade with 403, as some corporate proxies do, and
// passes other requests through. The client must end on the stream, get
// pushes and send ops over it, honour the stream's close codes as socket
// close codes, notice a silent stream, and return to WebSocket once the
// proxy lets upgrades through again.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import { b64u, cleanup, launchBrowser, makeSite, mintToken, openPage, relayPost, seal, sleep, startPageServer, startRelay, startWsBlockingProxy } from './harness.js';

const SITE = makeSite('stream-test.local');
const THREAD = 21;
const MEMBERS = [1, 2];
/** The relay heartbeats (and pings) every 0.5 s here, so "two silent intervals" is quick to see. */
const HEARTBEAT_MS = 500;
const RELAY_CONFIG = `[limits]\nping_interval_secs = ${HEARTBEAT_MS / 1000}\nidle_timeout_secs = 5\n`;

/** user → unix second of its last revocation (tokens must then carry a later iat, PROTOCOL.md §6) */
const revokedAt = {};
const stored = {};

const routes = {
  '/wp/token': (url) => {
    const user = Number(url.searchParams.get('user'));
    const iat = Math.max(Math.floor(Date.now() / 1000), (revokedAt[user] ?? -1) + 1);
    return { token: mintToken(SITE.relayKey, { site: SITE.site, sub: user, iat, exp: iat + 3600 }) };
  },
  '/wp/thread-token': (url) => {
    const user = Number(url.searchParams.get('user'));
    const thread = Number(url.searchParams.get('thread'));
    if (!MEMBERS.includes(user)) throw Object.assign(new Error('not a member'), { status: 403 });
    const iat = Math.max(Math.floor(Date.now() / 1000), (revokedAt[user] ?? -1) + 1);
    return { token: mintToken(SITE.relayKey, { site: SITE.site, sub: user, thread, iat, exp: iat + 3600 }) };
  },
  '/wp/key': (url) => ({ key: b64u(SITE.keyFor(url.searchParams.get('kid'))) }),
  '/wp/catchup': (url) => ({ events: stored[Number(url.searchParams.get('user'))] || [] }),
};

let relay;
let proxy;
let server;
let context;

before(async () => {
  relay = await startRelay({ site: SITE.site, relayKey: SITE.relayKey, config: RELAY_CONFIG });
  proxy = await startWsBlockingProxy(relay.port);
  server = await startPageServer(routes);
  context = await launchBrowser();
});

after(cleanup);

/** A page of `user` whose client reaches the relay at `url` (the blocking proxy by default), connected. */
async function pageFor(user, { url = proxy.wsUrl, opts = {} } = {}) {
  const page = await openPage(context, `${server.origin}/tests/client/client.html`);
  await page.waitForFunction(() => typeof window.setupClient === 'function');
  const all = { backoffBase: 50, backoffCap: 300, heartbeatInterval: HEARTBEAT_MS, ...opts };
  await page.evaluate((cfg) => window.setupClient(cfg), { user, url, site: SITE.site, opts: all });
  await page.evaluate(() => window.client.connect());
  await page.waitForFunction(() => window.client.state === 'connected', null, { timeout: 10000 });
  return page;
}

/** WordPress pushes a message to Bob (user 2): his page shows it within 3 s. */
async function pushShows(page, text) {
  const e = seal(SITE.site, SITE.keyFor('u/2'), 'u/2', 'message.new', { text });
  await push([{ to: [2], e }]);
  await page.waitForSelector(`li[data-id="${e.id}"]`, { timeout: 3000 });
}

const logOf = (page) => page.evaluate(() => window.bmLog);

async function push(events) {
  const r = await relayPost(relay.port, SITE.site, SITE.relayKey, '/v1/push', { events });
  assert.equal(r.status, 200, `push: ${JSON.stringify(r.body)}`);
  return r.body;
}

test('WebSocket refused by a proxy: after two tries the client is on the stream, gets pushes, and sub, pub, presence and ping work over it', async () => {
  proxy.block = true;
  const blockedBefore = proxy.blocked;
  const bob = await pageFor(2);
  assert.equal(await bob.evaluate(() => window.client.transport), 'stream');
  const log0 = await logOf(bob);
  assert.deepEqual(log0.transports, ['stream'], 'one switch, to the stream');
  assert.equal(proxy.blocked - blockedBefore, 2, 'two refused upgrades, then the stream');
  assert.deepEqual(log0.states.filter((s) => s.startsWith('disconnected')), ['disconnected:1006', 'disconnected:1006']);
  assert.equal(log0.ready[0].transport, 'stream');

  // A push to the user comes over the stream, opened and shown once.
  const e = seal(SITE.site, SITE.keyFor('u/2'), 'u/2', 'message.new', { text: 'through the stream' });
  assert.deepEqual((await push([{ to: [2], e }])).results[0].online, [2], 'the relay counts the stream as Bob online');
  await bob.waitForSelector(`li[data-id="${e.id}"]`, { timeout: 3000 });

  // Ops by POST: sub (its `ok` comes on the stream), then pub both ways with
  // Alice on a plain WebSocket to the relay itself.
  await bob.evaluate((t) => window.client.subscribe(t), THREAD);
  const alice = await pageFor(1, { url: relay.wsUrl });
  assert.equal(await alice.evaluate(() => window.client.transport), 'websocket');
  await alice.evaluate((t) => window.client.subscribe(t), THREAD);
  const fromBob = await bob.evaluate((t) => window.client.publish(t, 'typing', { on: true }), THREAD);
  await alice.waitForFunction(() => window.bmLog.hints.length > 0, null, { timeout: 3000 });
  assert.deepEqual((await logOf(alice)).hints.map((h) => [h.id, h.from]), [[fromBob, 2]]);
  const fromAlice = await alice.evaluate((t) => window.client.publish(t, 'typing', { on: false }), THREAD);
  await bob.waitForFunction(() => window.bmLog.hints.length > 0, null, { timeout: 3000 });
  assert.deepEqual((await logOf(bob)).hints.map((h) => [h.id, h.from]), [[fromAlice, 1]]);
  const thread = seal(SITE.site, SITE.keyFor(`t/${THREAD}/0`), `t/${THREAD}/0`, 'message.new', { text: 'to the thread' });
  await push([{ to: [], thread: THREAD, e: thread }]);
  await bob.waitForSelector(`li[data-id="${thread.id}"]`, { timeout: 3000 });
  const online = await bob.evaluate(async (t) => [...(await window.client.presence([t])).get(t)], THREAD);
  assert.deepEqual(online, [1, 2]);
  assert.ok((await bob.evaluate(() => window.client.ping())) >= 0);
  // A refused op's error comes back as on a socket: not subscribed to thread 99.
  const refused = await bob.evaluate(() => window.client._request({ op: 'unsub', thread: 99 }).then(() => null, (err) => err.code));
  assert.equal(refused, 'not_subscribed');
  // Ops go in order: ten pubs in a row all arrive, in the order sent.
  const ids = await bob.evaluate(async (t) => {
    const out = [];
    for (let i = 0; i < 10; i++) out.push(window.client.publish(t, 'typing', { i }));
    return Promise.all(out);
  }, THREAD);
  await alice.waitForFunction(() => window.bmLog.hints.length >= 11, null, { timeout: 5000 });
  assert.deepEqual((await logOf(alice)).hints.slice(1).map((h) => h.id), ids);
  assert.deepEqual((await logOf(bob)).dropped, []);
  // The browser's own console lines about the refused upgrades are all it logged.
  assert.deepEqual(bob.errors.filter((e) => !/^WebSocket connection to .* 403$/.test(e)), []);
  await alice.close();
  await bob.close();
});

test('close codes on the stream are the socket\'s: 4003 (revoked) gets a new token and a new stream; 1001 with retry_ms is waited out', async () => {
  proxy.block = true;
  const bob = await pageFor(2);
  assert.equal(await bob.evaluate(() => window.client.transport), 'stream');
  const tokensBefore = await bob.evaluate(() => window.client._token.value);
  // WordPress revokes Bob (as after a password change): the relay ends his stream with close 4003.
  const t = Math.floor(Date.now() / 1000) + 1;
  revokedAt[2] = t;
  const d = await relayPost(relay.port, SITE.site, SITE.relayKey, '/v1/disconnect', { users: [2] });
  assert.equal(d.status, 200);
  await bob.waitForFunction(() => window.bmLog.states.includes('disconnected:4003'), null, { timeout: 5000 });
  await bob.waitForFunction(() => window.client.state === 'connected', null, { timeout: 10000 });
  assert.notEqual(await bob.evaluate(() => window.client._token.value), tokensBefore, 'a new token after 4003');
  assert.equal(await bob.evaluate(() => window.client.transport), 'stream', 'a relay\'s close is no reason to leave the stream');

  // The relay shuts down: 1001 with `; retry_ms=N` on the stream's close event.
  process.kill(relay.child.pid, 'SIGTERM');
  await bob.waitForFunction(() => window.bmLog.states.includes('disconnected:1001'), null, { timeout: 5000 });
  await relay.stop();
  const { retries } = await logOf(bob);
  assert.equal(retries.length, 1, JSON.stringify(retries));
  assert.match(retries[0].reason, new RegExp(`retry_ms=${retries[0].retryIn}$`));
  relay = await startRelay({ site: SITE.site, relayKey: SITE.relayKey, port: relay.port, adminPort: relay.adminPort, config: RELAY_CONFIG });
  await bob.waitForFunction(() => window.client.state === 'connected', null, { timeout: 10000 });
  await pushShows(bob, 'after the restart');
  await bob.close();
});

test('a stream silent for two heartbeat intervals is dead: the client drops it and opens a new one when the relay answers again', async () => {
  proxy.block = true;
  const bob = await pageFor(2, { opts: { requestTimeout: 3000 } });
  assert.equal(await bob.evaluate(() => window.client.transport), 'stream');
  // Heartbeats arrive: a quiet but healthy stream is kept well past two intervals.
  await sleep(HEARTBEAT_MS * 4);
  assert.equal(await bob.evaluate(() => window.client.state), 'connected');
  const stoppedAt = Date.now();
  process.kill(-relay.child.pid, 'SIGSTOP');
  try {
    await bob.waitForFunction(() => window.bmLog.states.includes('disconnected:4000'), null, { timeout: 5000 });
  } finally {
    process.kill(-relay.child.pid, 'SIGCONT');
  }
  const noticed = Date.now() - stoppedAt;
  assert.ok(noticed >= HEARTBEAT_MS, `noticed after ${noticed} ms`);
  await bob.waitForFunction(() => window.client.state === 'connected', null, { timeout: 10000 });
  await pushShows(bob, 'after the stall');
  await bob.close();
});

test('once the proxy lets WebSocket through again, the client moves back to it and catches up', async () => {
  proxy.block = true;
  const bob = await pageFor(2, { opts: { wsRetryInterval: 700 } });
  assert.equal(await bob.evaluate(() => window.client.transport), 'stream');
  await sleep(1000);
  assert.equal(await bob.evaluate(() => window.client.transport), 'stream', 'blocked background tries keep it on the stream');
  const catchups = (await logOf(bob)).catchups.length;
  proxy.block = false;
  await bob.waitForFunction(() => window.client.transport === 'websocket' && window.client.state === 'connected', null, { timeout: 5000 });
  assert.deepEqual((await logOf(bob)).transports, ['stream', 'websocket']);
  await bob.waitForFunction((n) => window.bmLog.catchups.length > n, catchups, { timeout: 3000 });
  await pushShows(bob, 'over the socket again');
  await bob.close();
});
