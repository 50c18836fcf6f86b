// One socket per browser (docs/CLIENT.md): pages of one browser context
// reach the real relay through one SharedWorker (bm-shared-worker.js), each
// with its own BmClient over a PortSocket (bm-shared.js). The relay's own
// /metrics gauges count the sockets and subscriptions it holds; the harness
// plays WordPress as in relay.test.js.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import { b64u, cleanup, launchBrowser, makeSite, mintToken, openPage, relayPost, seal, sleep, startPageServer, startRelay, until } from './harness.js';

const SITE = makeSite('shared-test.local');
const THREAD = 12;
const OTHER = 13;

/** The stand-in WordPress: every user is a member of both threads. */
const routes = {
  '/wp/token': (url) => {
    const user = Number(url.searchParams.get('user'));
    const iat = Math.floor(Date.now() / 1000);
    return { token: mintToken(SITE.relayKey, { site: SITE.site, sub: user, iat, exp: iat + 3600 }) };
  },
  '/wp/thread-token': (url) => {
    const user = Number(url.searchParams.get('user'));
    const thread = Number(url.searchParams.get('thread'));
    const iat = Math.floor(Date.now() / 1000);
    return { token: mintToken(SITE.relayKey, { site: SITE.site, sub: user, thread, iat, exp: iat + 3600 }) };
  },
  '/wp/key': (url) => {
    const user = Number(url.searchParams.get('user'));
    const kid = url.searchParams.get('kid');
    if (/^t\/\d+\/0$/.test(kid) || kid === `u/${user}`) return { key: b64u(SITE.keyFor(kid)) };
    throw Object.assign(new Error('no such key'), { status: 403 });
  },
  '/wp/catchup': () => ({ events: [] }),
};

/** The relay, the stand-in WordPress and the browser, for every test of the file. */
let relay, server, context;
before(async () => {
  [relay, server, context] = await Promise.all([startRelay({ site: SITE.site, relayKey: SITE.relayKey }), startPageServer(routes), launchBrowser()]);
});
after(cleanup);

/** A gauge of the relay's admin /metrics. */
async function gauge(name) {
  const text = await (await fetch(`http://127.0.0.1:${relay.adminPort}/metrics`)).text();
  const m = new RegExp(`^${name} (\\d+)$`, 'm').exec(text);
  assert.ok(m, `${name} in /metrics`);
  return Number(m[1]);
}

/** Waits until the earlier tests' sockets are gone (pages closed, the worker's grace over). */
async function settled() {
  await until(async () => (await gauge('bm_relay_authenticated_connections')) === 0, 10000, 'no socket left');
}

async function push(events) {
  const r = await relayPost(relay.port, SITE.site, SITE.relayKey, '/v1/push', { events });
  assert.equal(r.status, 200, `push: ${JSON.stringify(r.body)}`);
  return r.body;
}

/**
 * A page of `user` connected through the shared worker (or alone: `shared`
 * false), its threads subscribed. The worker (one per user) drops a page
 * silent for `silent` ms: by default longer than any test, so a page closed
 * is dropped by its `pagehide` alone.
 */
async function pageFor(user, { threads = [], shared = true, ctx = context, silent = 60000 } = {}) {
  const page = await openPage(ctx, `${server.origin}/tests/client/client.html`);
  await page.waitForFunction(() => typeof window.setupSharedClient === 'function');
  const cfg = { user, url: relay.wsUrl, site: SITE.site, timing: { grace: 1000, heartbeat: 1000, silent } };
  const viaWorker = await page.evaluate((c) => (c.shared ? window.setupSharedClient(c) : window.setupClient(c)), { ...cfg, shared });
  await page.evaluate(() => window.client.connect());
  await page.waitForFunction(() => window.client.state === 'connected', null, { timeout: 10000 });
  for (const t of threads) await page.evaluate((th) => window.client.subscribe(th), t);
  page.viaWorker = viaWorker;
  return page;
}

/**
 * Two pages of `user` watching THREAD, with no other socket on the relay:
 * through the worker (one socket) or, `shared` false, alone (two).
 */
async function twoPages(user, shared) {
  await settled();
  const pages = [await pageFor(user, { threads: [THREAD] }), await pageFor(user, { threads: [THREAD] })];
  assert.deepEqual(
    pages.map((p) => p.viaWorker),
    [shared, shared],
  );
  assert.equal(await gauge('bm_relay_authenticated_connections'), shared ? 1 : 2, shared ? 'one socket for both pages' : 'one socket per page');
  return pages;
}

const threadPush = (thread, text) => seal(SITE.site, SITE.keyFor(`t/${thread}/0`), `t/${thread}/0`, 'message.new', { text });

test('two pages of one browser share one socket; both get pushes, hints, presence', async () => {
  const [bob1, bob2] = await twoPages(2, true);
  const alice = await pageFor(1, { threads: [THREAD], shared: false });
  assert.equal(await gauge('bm_relay_authenticated_connections'), 2);

  // A push to the user, and one to the thread: each page opens and shows it.
  const toBob = seal(SITE.site, SITE.keyFor('u/2'), 'u/2', 'message.new', { text: 'to Bob' });
  const res = await push([{ to: [2], e: toBob }]);
  assert.deepEqual(res.results[0].online, [2]);
  const toThread = threadPush(THREAD, 'to the thread');
  await push([{ to: [], thread: THREAD, e: toThread }]);
  for (const p of [bob1, bob2]) {
    await p.waitForSelector(`li[data-id="${toBob.id}"]`, { timeout: 5000 });
    await p.waitForSelector(`li[data-id="${toThread.id}"]`, { timeout: 5000 });
  }
  await alice.waitForSelector(`li[data-id="${toThread.id}"]`, { timeout: 5000 });

  // Alice types: both of Bob's pages get the hint. Bob types in one page:
  // Alice gets it, and so does his other page (the relay would send it to
  // his other sockets; here the worker does).
  const aId = await alice.evaluate((t) => window.client.publish(t, 'typing', { on: true }), THREAD);
  const bId = await bob1.evaluate((t) => window.client.publish(t, 'typing', { on: true }), THREAD);
  for (const [p, id, from] of [
    [bob1, aId, 1],
    [bob2, aId, 1],
    [bob2, bId, 2],
    [alice, bId, 2],
  ]) {
    await p.waitForFunction((i) => window.bmLog.hints.some((h) => h.id === i), id, { timeout: 5000 });
    const h = await p.evaluate((i) => window.bmLog.hints.find((x) => x.id === i), id);
    assert.equal(h.from, from);
  }
  await sleep(300);
  assert.deepEqual(
    (await bob1.evaluate(() => window.bmLog.hints)).map((h) => h.id),
    [aId],
    'a page does not get its own hint back',
  );

  // Presence over the shared socket.
  const online = await bob2.evaluate(async (t) => [...(await window.client.presence([t])).entries()], THREAD);
  assert.deepEqual(online, [[THREAD, [1, 2]]]);
  for (const p of [bob1, bob2, alice]) assert.deepEqual(p.errors, []);
  await alice.close();
  await bob1.close();
  await bob2.close();
});

test('a closed page\'s subscriptions are dropped; the socket closes after the last page', async () => {
  await settled();
  const subs0 = await gauge('bm_relay_subscriptions');
  // Carol: one page watches THREAD, the other OTHER.
  const c1 = await pageFor(3, { threads: [THREAD] });
  const c2 = await pageFor(3, { threads: [OTHER] });
  assert.equal(await gauge('bm_relay_authenticated_connections'), 1);
  assert.equal(await gauge('bm_relay_subscriptions'), subs0 + 2, 'the socket holds the union of the pages\' threads');
  const dave = await pageFor(4, { threads: [THREAD], shared: false });
  const who = async () => new Map(await dave.evaluate(async (t) => [...(await window.client.presence([t])).entries()], THREAD)).get(THREAD);
  assert.deepEqual(await who(), [3, 4]);

  await c1.close(); // pagehide → the worker drops its sockets and threads
  await until(async () => (await gauge('bm_relay_subscriptions')) === subs0 + 2, 3000, 'THREAD dropped (Dave\'s one left)');
  assert.deepEqual(await who(), [4], 'Carol is no longer in THREAD');
  assert.equal(await gauge('bm_relay_authenticated_connections'), 2, 'Carol\'s other page keeps the socket');

  // A push to the thread Carol's remaining page does not watch reaches
  // Dave, and not that page; one to OTHER reaches it.
  const e1 = threadPush(THREAD, 'not for c2');
  const e2 = threadPush(OTHER, 'for c2');
  await push([{ to: [], thread: THREAD, e: e1 }]);
  await push([{ to: [], thread: OTHER, e: e2 }]);
  await dave.waitForSelector(`li[data-id="${e1.id}"]`, { timeout: 5000 });
  await c2.waitForSelector(`li[data-id="${e2.id}"]`, { timeout: 5000 });
  assert.equal(await c2.locator(`li[data-id="${e1.id}"]`).count(), 0);

  await c2.close();
  await until(async () => (await gauge('bm_relay_authenticated_connections')) === 1, 8000, 'Carol\'s socket closed after the grace');
  await dave.close();
});

test('a page that stops answering the worker (no pagehide) is dropped by the heartbeat', async () => {
  await settled();
  const subs0 = await gauge('bm_relay_subscriptions');
  const e1 = await pageFor(5, { threads: [THREAD], silent: 3000 });
  const e2 = await pageFor(5, { threads: [OTHER], silent: 3000 });
  assert.equal(await gauge('bm_relay_subscriptions'), subs0 + 2);
  // The page's end of the port stops answering heartbeats, as a page that
  // crashed or was frozen does.
  await e1.evaluate(() => {
    window.bmLink.post = () => {};
    window.bmLink.port.onmessage = null;
  });
  await until(async () => (await gauge('bm_relay_subscriptions')) === subs0 + 1, 10000, 'the silent page\'s thread dropped');
  await e1.close();
  await e2.close();
});

test('a worker that does not start (its script missing) leaves the page to connect alone, at once', async () => {
  const page = await openPage(context, `${server.origin}/tests/client/client.html`);
  const r = await page.evaluate(async (site) => {
    const { connectShared } = await import('/assets/bm-shared.js');
    const t0 = performance.now();
    const link = await connectShared({ workerUrl: '/assets/no-such-worker.js', name: 'missing', config: { url: 'ws://127.0.0.1:9/v1/ws', site }, getToken: () => 'x' });
    return { link: link === null, ms: performance.now() - t0 };
  }, SITE.site);
  assert.equal(r.link, true, 'no shared connection');
  assert.ok(r.ms < 4000, `told by the worker's error event, not the 5 s timeout (${Math.round(r.ms)} ms)`);
  await page.close();
});

test('without SharedWorker each page has its own socket', async () => {
  await context.addInitScript(() => {
    delete window.SharedWorker;
  });
  const [p1, p2] = await twoPages(2, false);
  const e = threadPush(THREAD, 'both');
  await push([{ to: [], thread: THREAD, e }]);
  for (const p of [p1, p2]) await p.waitForSelector(`li[data-id="${e.id}"]`, { timeout: 5000 });
  await p1.close();
  await p2.close();
});
