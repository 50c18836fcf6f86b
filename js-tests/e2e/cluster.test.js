// End to end on a two-relay cluster (PROTOCOL.md §7): the site's relay
// (relay 1, the one WordPress pushes to) and relay 2, joined through a
// real nats-server. Bob's page is given both URLs, relay 2's first; Alice's
// page is on relay 1. Relay 2 is SIGKILLed (no close frame, no goodbye to
// the cluster): Bob's page reconnects to relay 1 and catches up from
// WordPress; no message Alice sent meanwhile is lost, none is shown twice.

import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { ROOT, cleanup, person, shot, sleep, startNats, startSite, until } from './site.js';

const EXT = process.env.BM_EXT_SO || path.join(ROOT, 'target/release/bm_relay.so');

/** @type {any} */ let site;
/** @type {any} */ let alice;
/** @type {any} */ let bob;
/** @type {{url: string, stop: () => void}|null} */ let nats = null;

const texts = (p) => p.page.$$eval('#bm-chat .bmc-messages > li.bmc-msg:not(.bmc-pending) > .bmc-text', (els) => els.map((e) => e.textContent));
const conn = (p) => p.page.getAttribute('#bm-chat .bmc-conn', 'data-state');
const connected = (p, timeout = 15000) => until(async () => (await conn(p)) === 'connected', timeout, `${p.login}'s page to show connected`);
const clientUrl = (p) => p.page.evaluate(() => window.bmChat.client.url);

/** Types a message and presses Enter; resolves once WordPress stored it (the page marks it). */
async function send(p, text) {
  const input = p.page.getByLabel('Message', { exact: true });
  await input.fill(text);
  await input.press('Enter');
  await p.page
    .locator('#bm-chat .bmc-messages > li.bmc-msg:not(.bmc-pending)')
    .filter({ has: p.page.locator('.bmc-text', { hasText: text }) })
    .last()
    .locator('.bmc-mark')
    .waitFor({ timeout: 10000 });
}

before(async () => {
  assert.ok(fs.existsSync(EXT), `${EXT} is missing: run \`make ext\``);
  nats = await startNats();
  const url = nats.url;
  site = await startSite({ ext: EXT, env: { BM_CLUSTER_NATS: `${url} ${url}`, BM_RELAY2_USERS: 'bob' } });
  assert.ok(site.relay2, 'the site runs in cluster mode');
  [alice, bob] = await Promise.all([person(site, 'alice'), person(site, 'bob')]);
});

after(async () => {
  for (const p of [alice, bob]) if (p) await shot(p.page, `cluster-final-${p.login}`).catch(() => {});
  await cleanup();
  if (site) await site.stop();
  if (nats) nats.stop();
});

test('Bob\'s relay is SIGKILLed: his page reconnects to the other relay and catches up, no message lost or doubled', async (t) => {
  await Promise.all([connected(alice), connected(bob)]);
  assert.equal(await clientUrl(bob), site.relay2.ws_url, 'Bob\'s page is on relay 2');
  assert.equal(await clientUrl(alice), site.ws_url, 'Alice\'s page is on relay 1');

  // A conversation between them, open on both pages.
  const a = alice.page;
  await a.getByRole('button', { name: 'New conversation' }).click();
  await a.getByLabel('Search people').fill('bo');
  await a.getByRole('button', { name: 'Add Bob' }).click();
  await a.getByLabel('Subject (optional)').fill('Failover');
  await a.getByRole('button', { name: 'Start conversation' }).click();
  await a.locator('#bm-chat .bmc-conv-title', { hasText: 'Failover' }).waitFor({ timeout: 5000 });
  await bob.page.locator('#bm-chat .bmc-thread', { hasText: 'Failover' }).click();
  await bob.page.locator('#bm-chat .bmc-conv-title', { hasText: 'Failover' }).waitFor({ timeout: 5000 });

  // Across the cluster: WordPress → relay 1 → NATS → relay 2 → Bob.
  await send(alice, 'before the crash');
  await until(async () => (await texts(bob)).includes('before the crash'), 3000, 'the message through relay 2');
  const reconnects0 = await bob.page.evaluate(() => window.bmChat.client.stats.reconnects);

  const r = await site.command('kill-relay2');
  const t0 = Date.now();
  // Alice goes on writing while Bob's page has lost its relay.
  const during = ['during 1', 'during 2', 'during 3'];
  const bobConnected = [];
  for (const m of during) {
    await send(alice, m);
    bobConnected.push((await conn(bob)) === 'connected');
  }
  t.diagnostic(`Bob's page connected when each was stored: ${bobConnected.join(', ')}`);
  // Relay 1 holds a new socket's `ready` until the dead node is
  // acknowledged or 1 s passes (PROTOCOL.md §7.4): the first message is
  // stored while Bob's page has no relay, so only the catch-up brings it.
  assert.equal(bobConnected[0], false, 'the first message was stored while Bob was offline');

  await until(async () => (await clientUrl(bob)) === site.ws_url && (await conn(bob)) === 'connected', 30000, 'Bob\'s page on relay 1');
  t.diagnostic(`relay 2 (pid ${r.pid}) SIGKILLed → Bob's page connected to relay 1 after ${Date.now() - t0} ms`);
  assert.ok((await bob.page.evaluate(() => window.bmChat.client.stats.reconnects)) > reconnects0);
  await send(alice, 'after the crash');

  const want = ['before the crash', ...during, 'after the crash'];
  await until(async () => (await texts(bob)).filter((x) => want.includes(x)).length >= want.length, 10000, 'every message on Bob\'s page');
  await sleep(500);
  const shown = (await texts(bob)).filter((x) => want.includes(x));
  assert.deepEqual(shown, want, 'each message once, in order');
  await shot(bob.page, 'cluster-bob-after-failover');
});
