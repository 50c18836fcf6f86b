// End to end, one socket per browser (issue #16, docs/CLIENT.md): Bob has
// the chat page open in three tabs of his browser, Alice in one of hers.
// The relay's own /metrics count the sockets: two (one per browser), not
// four. Alice writes; each of Bob's three tabs shows it live, through the
// one socket his tabs share (the SharedWorker), without a reload.

import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { ROOT, cleanup, person, shot, startSite, until } from './site.js';
import { connected, msg, open, realErrors, send, startConversation } from './ui.js';

const EXT = process.env.BM_EXT_SO || path.join(ROOT, 'target/release/bm_relay.so');

/** @type {any} */ let site;
/** @type {any} */ let alice;
/** @type {any} */ let bob;
/** Bob's tabs: his person's page and two more of the same browser. */
/** @type {any[]} */ let bobTabs = [];

before(async () => {
  assert.ok(fs.existsSync(EXT), `${EXT} is missing: run \`make ext\``);
  site = await startSite({ ext: EXT });
  [alice, bob] = await Promise.all([person(site, 'alice'), person(site, 'bob')]);
});

after(async () => {
  for (const [i, p] of bobTabs.entries()) await shot(p.page, `shared-final-bob-tab${i + 1}`).catch(() => {});
  await cleanup();
  if (site) await site.stop();
});

/** Gauges of the relay's admin /metrics. */
async function metrics() {
  const text = await (await fetch(`http://127.0.0.1:${site.admin_port}/metrics`)).text();
  const g = (name) => Number((new RegExp(`^${name} (\\d+)$`, 'm').exec(text) || [])[1]);
  return { sockets: g('bm_relay_authenticated_connections'), users: g('bm_relay_users') };
}

/** Another tab of `p`'s browser on the chat page (its errors collected as person() does). */
async function anotherTab(p) {
  const page = await p.context.newPage();
  page.errors = [];
  page.on('pageerror', (e) => page.errors.push(String(e)));
  page.on('console', (m) => {
    if (m.type() === 'error') page.errors.push(m.text());
  });
  await page.goto(site.chat_url);
  await page.locator('#bm-chat .bmc').waitFor({ timeout: 10000 });
  return { ...p, page };
}

test('three tabs of Bob share one socket on the relay, and each shows Alice\'s message live', async (t) => {
  const t00 = Date.now();
  bobTabs = [bob, await anotherTab(bob), await anotherTab(bob)];
  t.diagnostic(`tabs open ${Date.now() - t00} ms`);
  await Promise.all([alice, ...bobTabs].map((p) => connected(p, 30000)));
  t.diagnostic(`connected ${Date.now() - t00} ms`);
  // Alice's browser and Bob's: two sockets, two users, for four tabs.
  await until(async () => (await metrics()).sockets === 2, 10000, 'two sockets on the relay');
  assert.deepEqual(await metrics(), { sockets: 2, users: 2 });
  for (const p of bobTabs) assert.equal(await p.page.evaluate(() => window.bmChat.client.transport), 'websocket');

  await startConversation(alice, 'bob', 'Bob', 'Three tabs');
  for (const p of bobTabs) {
    await p.page.locator('#bm-chat .bmc-thread', { hasText: 'Three tabs' }).waitFor({ timeout: 10000 });
    await open(p, 'Three tabs');
  }
  t.diagnostic(`conversation open in every tab ${Date.now() - t00} ms`);
  const t0 = Date.now();
  await send(alice, 'Hello, all of your tabs');
  // Live: well inside the 5 s a poll would take.
  await Promise.all(bobTabs.map((p) => msg(p, 'Hello, all of your tabs').waitFor({ timeout: 4000 })));
  console.log(`# shared e2e: Alice's message in Bob's three tabs ${Date.now() - t0} ms after she pressed Enter; relay ${JSON.stringify(await metrics())}`);
  for (const [i, p] of bobTabs.entries()) await shot(p.page, `shared-bob-tab${i + 1}`);

  // Bob answers from his third tab: Alice gets it, and so do his other two.
  await send(bobTabs[2], 'Seen it in every tab');
  await Promise.all([alice, bobTabs[0], bobTabs[1]].map((p) => msg(p, 'Seen it in every tab').waitFor({ timeout: 4000 })));
  assert.deepEqual(await metrics(), { sockets: 2, users: 2 }, 'still one socket per browser');
  for (const p of [alice, ...bobTabs]) assert.deepEqual(realErrors(p), [], p.login);
});
