// End to end, WebSocket blocked (issue #15 "When WebSocket cannot get
// through", PROTOCOL.md §6.1): the browsers reach the relay only through a
// proxy that answers every `Upgrade: websocket` with 403 and passes other
// HTTP through, as some corporate proxies do (WordPress's relay URL for
// browsers points at the proxy; WordPress itself pushes to the relay
// directly). Two people chat and each message arrives live, without a
// reload, over the relay's stream; and the connection doctor on the
// settings page, run by the admin through the same proxy, reports
// WebSocket failing (upgrade blocked) while the stream and WordPress
// polling work.

import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { startWsBlockingProxy } from '../client/harness.js';
import { ROOT, cleanup, freePort, person, shot, startSite } from './site.js';
import { connected, msg, open, realErrors, send, startConversation } from './ui.js';

const EXT = process.env.BM_EXT_SO || path.join(ROOT, 'target/release/bm_relay.so');

/** @type {any} */ let site;
/** @type {any} */ let proxy;
/** @type {any} */ let alice;
/** @type {any} */ let bob;

before(async () => {
  assert.ok(fs.existsSync(EXT), `${EXT} is missing: run \`make ext\``);
  const relayPort = await freePort();
  proxy = await startWsBlockingProxy(relayPort);
  site = await startSite({ ext: EXT, env: { BM_RELAY_PORT: String(relayPort), BM_WS_PORT: String(proxy.port) } });
  assert.equal(site.ws_url, proxy.wsUrl, 'browsers are given the proxy');
  [alice, bob] = await Promise.all([person(site, 'alice'), person(site, 'bob')]);
});

after(async () => {
  for (const p of [alice, bob]) {
    if (p) await shot(p.page, `stream-final-${p.login}`).catch(() => {});
  }
  await cleanup();
  if (site) await site.stop();
});

/** What the page's relay client says about itself. */
const clientOf = (p) => p.page.evaluate(() => ({ transport: window.bmChat.client.transport, state: window.bmChat.client.state, polling: window.bmChat.client.polling }));

test('WebSocket blocked by a proxy: two people chat, each message arrives live through the stream', async () => {
  await Promise.all([connected(alice, 30000), connected(bob, 30000)]);
  assert.ok(proxy.blocked >= 4, `the proxy refused both pages' upgrades (${proxy.blocked})`);
  for (const p of [alice, bob]) {
    assert.deepEqual(await clientOf(p), { transport: 'stream', state: 'connected', polling: false }, p.login);
    assert.equal(await p.page.getAttribute('#bm-chat .bmc-conn', 'data-transport'), 'stream');
  }
  await startConversation(alice, 'bob', 'Bob', 'Behind the proxy');
  await bob.page.locator('#bm-chat .bmc-thread', { hasText: 'Behind the proxy' }).waitFor({ timeout: 10000 });
  await open(bob, 'Behind the proxy');

  // Live: no reload, and well inside the 5 s a poll would take.
  const t0 = Date.now();
  await send(alice, 'Hello through the stream');
  await msg(bob, 'Hello through the stream').waitFor({ timeout: 4000 });
  const aliceToBob = Date.now() - t0;
  const t1 = Date.now();
  await send(bob, 'Received, and back the same way');
  await msg(alice, 'Received, and back the same way').waitFor({ timeout: 4000 });
  const bobToAlice = Date.now() - t1;
  console.log(`# stream e2e: send + arrival ${aliceToBob} ms (Alice → Bob), ${bobToAlice} ms (Bob → Alice)`);
  // Still on the stream, never polling: the messages came pushed.
  for (const p of [alice, bob]) assert.deepEqual(await clientOf(p), { transport: 'stream', state: 'connected', polling: false }, p.login);
  assert.deepEqual(realErrors(alice), []);
  assert.deepEqual(realErrors(bob), []);
});

test('the connection doctor, run by the admin behind that proxy: WebSocket fails (upgrade blocked), the stream and polling work', async () => {
  const admin = await person(site, 'admin');
  const page = admin.page;
  await page.goto(`${site.url}/wp-admin/options-general.php?page=bm-relay`);
  const doctor = page.locator('#bm-relay-doctor');
  await doctor.waitFor({ timeout: 10000 });
  await page.click('#bm-relay-doctor-run');
  await page.waitForFunction(() => document.getElementById('bm-relay-doctor').dataset.done, null, { timeout: 40000 });
  const rows = await page.$$eval('#bm-relay-doctor-results tbody tr', (trs) =>
    trs.map((tr) => ({ way: tr.dataset.way, result: tr.dataset.result, text: tr.querySelector('.bm-doctor-result').textContent, ms: tr.querySelector('.bm-doctor-ms').textContent })),
  );
  console.log(`# doctor: ${rows.map((r) => `${r.way} ${r.result} (${r.text}) ${r.ms}`).join('; ')}`);
  assert.deepEqual(rows.map((r) => [r.way, r.result]), [['websocket', 'fails'], ['stream', 'works'], ['polling', 'works']]);
  assert.match(rows[0].text, /upgrade blocked/);
  for (const r of rows) assert.match(r.ms, /^\d+ ms$/, `${r.way}: ${r.ms}`);
  // The verdict counts the streams (/metrics) among live connections, and
  // says why it is degraded: this browser, too, only gets through streaming.
  assert.match(await page.locator('#bm-relay-status').textContent(), /[2-9]\d* browsers connected to the relay now \([2-9]\d* through the streaming fallback\)/);
  await page.locator('#bm-relay-verdict[data-level="degraded"] .bm-verdict-browser[data-level="degraded"]').waitFor({ timeout: 20000 });
  await shot(page, 'stream-doctor');
  assert.deepEqual(realErrors(admin), []);
});
