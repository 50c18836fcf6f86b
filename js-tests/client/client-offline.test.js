// bm-client.js behaviour that needs no relay, in headless Chromium: the
// backoff schedule (exponential, full jitter, capped) against a port where
// nothing listens, the switch to polling after repeated failures, bounded
// dedupe memory, and the ingest contract for envelopes from WordPress.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import { b64u, cleanup, freePort, launchBrowser, makeSite, mintToken, openPage, seal, startPageServer } from './harness.js';

const SITE = makeSite('offline.test');
let page;
let server;
let context;
let closedPort;
const counts = { token: 0, poll: 0 };

before(async () => {
  closedPort = await freePort();
  server = await startPageServer({
    '/wp/token': () => {
      counts.token++;
      const now = Math.floor(Date.now() / 1000);
      return { token: mintToken(SITE.relayKey, { site: SITE.site, sub: 2, iat: now, exp: now + 3600 }) };
    },
    '/wp/key': (url) => ({ key: b64u(SITE.keyFor(url.searchParams.get('kid'))) }),
    '/wp/catchup': () => {
      counts.poll++;
      return { events: [] };
    },
  });
  context = await launchBrowser();
  page = await freshPage();
});

/** A page in a new renderer (Chromium throttles a renderer's failed WebSocket connects). */
async function freshPage() {
  const p = await openPage(context, `${server.origin}/tests/client/client.html`);
  await p.waitForFunction(() => typeof window.setupClient === 'function');
  return p;
}

after(cleanup);

test('backoff: exponential with full jitter, capped; polling starts after repeated failures', async () => {
  const starts = await page.evaluate(async ({ url, site }) => {
    // Full jitter draws uniformly in [0, ceiling]; pin the draw to the top
    // so the schedule is the ceiling itself: 40, 80, 160, 200, 200 ms.
    const random = Math.random;
    Math.random = () => 0.999;
    const times = [];
    const closes = [];
    class TimedWebSocket extends WebSocket {
      constructor(u) {
        super(u);
        times.push(performance.now());
        this.addEventListener('close', () => closes.push(performance.now()));
      }
    }
    window.setupClient({ user: 2, url, site, opts: { backoffBase: 40, backoffCap: 200, fallbackAfter: 3, pollInterval: 60000, WebSocket: TimedWebSocket, stream: false } });
    // (stream: false: this is the socket's schedule; stream.test.js has the switch to the stream.)
    window.client.connect();
    while (times.length < 6) await new Promise((r) => setTimeout(r, 20));
    window.client.disconnect();
    Math.random = random;
    return { times, closes, polling: window.bmLog.polling, states: window.bmLog.states };
  }, { url: `ws://127.0.0.1:${closedPort}/v1/ws`, site: SITE.site });
  // From each failure (close) to the next attempt.
  const gaps = starts.times.slice(1).map((t, i) => t - starts.closes[i]);
  const want = [40, 80, 160, 200, 200];
  gaps.forEach((g, i) => {
    // Lower bound exact (timers never fire early), upper bound loose (the
    // failed connect and the token fetch take a little time).
    assert.ok(g >= want[i] * 0.999 - 2, `gap ${i} = ${g.toFixed(1)} ms, expected ≥ ${want[i]}`);
    assert.ok(g < want[i] + 150, `gap ${i} = ${g.toFixed(1)} ms, expected about ${want[i]}`);
  });
  assert.deepEqual(starts.polling, [true, false], 'polling started after 3 failures and stopped by disconnect()');
  assert.ok(counts.poll >= 1);
  assert.equal(counts.token, 1, 'a still-valid token is reused across attempts');
  assert.match(starts.states.at(-1), /^disconnected/);
});

test('jitter: delays are spread over [0, ceiling], not fixed', async () => {
  const p = await freshPage();
  // The delays the client asks for (the setTimeout calls made from its
  // reconnect scheduler), not wall-clock gaps: a timer fires late on a
  // loaded machine (a 171 ms late one failed an upper bound on the gap).
  const { asked, gaps } = await p.evaluate(async ({ url, site }) => {
    const times = [];
    const closes = [];
    const asked = [];
    const plain = window.setTimeout;
    window.setTimeout = function (fn, ms, ...rest) {
      if (String(new Error().stack).includes('_scheduleReconnect')) asked.push(ms);
      return plain.call(window, fn, ms, ...rest);
    };
    class TimedWebSocket extends WebSocket {
      constructor(u) {
        super(u);
        times.push(performance.now());
        this.addEventListener('close', () => closes.push(performance.now()));
      }
    }
    window.setupClient({ user: 2, url, site, opts: { backoffBase: 200, backoffCap: 200, fallbackAfter: 1000, WebSocket: TimedWebSocket } });
    window.client.connect();
    while (times.length < 11) await new Promise((r) => plain(r, 20));
    window.client.close();
    window.setTimeout = plain;
    return { asked: asked.slice(0, 10), gaps: times.slice(1).map((t, i) => t - closes[i]) };
  }, { url: `ws://127.0.0.1:${closedPort}/v1/ws`, site: SITE.site });
  await p.close();
  assert.equal(asked.length, 10, `reconnect delays asked: ${asked.join(', ')}`);
  for (const d of asked) assert.ok(d >= 0 && d <= 200, `delay ${d} within [0, 200]`);
  assert.equal(gaps.length, 10, 'ten reconnects, each after its delay');
  // With 10 uniform draws in [0, 200) the chance that all fall in one
  // 50 ms band is below 1e-5: full jitter spreads them.
  const spread = Math.max(...asked) - Math.min(...asked);
  assert.ok(spread > 50, `delays are spread: ${asked.map((g) => g.toFixed(0)).join(', ')}`);
});

test('dedupe memory is bounded: the oldest ids are forgotten first', async () => {
  const envs = [1, 2, 3].map((n) => seal(SITE.site, SITE.keyFor('u/2'), 'u/2', 'message.new', { n }));
  const r = await page.evaluate(async ({ envs, site }) => {
    window.setupClient({ user: 2, url: 'ws://127.0.0.1:9/v1/ws', site, opts: { dedupeSize: 2 } });
    const c = window.client;
    const out = [];
    for (const e of envs) out.push((await c.ingest(e)) !== null);
    out.push((await c.ingest(envs[2])) !== null); // remembered: duplicate
    out.push((await c.ingest(envs[1])) !== null); // remembered: duplicate
    out.push((await c.ingest(envs[0])) !== null); // forgotten (window of 2): delivered again
    return { out, stats: c.stats };
  }, { envs, site: SITE.site });
  assert.deepEqual(r.out, [true, true, true, false, false, true]);
  assert.equal(r.stats.duplicates, 2);
  assert.equal(r.stats.delivered, 4);
});

test('ingest: envelopes from catch-up open like pushed ones; bad ones are dropped with a reason', async () => {
  const good = seal(SITE.site, SITE.keyFor('t/5/1'), 't/5/1', 'message.edit', { id: 9, text: 'edited' });
  const bad = { ...good, id: 'moved-to-another-id' };
  const r = await page.evaluate(async ({ good, bad, site }) => {
    window.setupClient({ user: 2, url: 'ws://127.0.0.1:9/v1/ws', site });
    const c = window.client;
    const a = await c.ingest(good, 'catchup');
    const b = await c.ingest(bad, 'catchup');
    const d = await c.ingest({ not: 'an envelope' });
    const e = await c.ingest(null);
    return { a, b, d, e, dropped: window.bmLog.dropped, items: [...document.querySelectorAll('#log li')].map((li) => li.textContent) };
  }, { good, bad, site: SITE.site });
  assert.deepEqual(r.a, { id: good.id, kid: 't/5/1', type: 'message.edit', data: { id: 9, text: 'edited' }, source: 'catchup' });
  assert.equal(r.b, null);
  assert.equal(r.d, null);
  assert.equal(r.e, null);
  assert.deepEqual(
    r.dropped.map((d) => `${d.id}|${d.reason}|${d.source}`),
    ['moved-to-another-id|open_failed|catchup', 'null|malformed|ingest', 'null|malformed|ingest'],
  );
  assert.ok(r.items.at(-1).startsWith('message.edit: {"id":9'));
});
