// End to end, a relay node crashes (issue #13 "Faults"): two relays joined
// through a real nats-server, behind a real nginx balancing over both (as
// docs/DEPLOY.md §10 deploys them), WordPress pushing through nginx, Alice
// and Bob in their own Chromium. Relay 1 is killed with SIGKILL while they
// chat: the pages on it reconnect through nginx to relay 2 and catch up
// from WordPress, and nobody loses a message — what a person sees is every
// message once, in order.
//
// Runs on Debian's WordPress only (`make test-e2e`): what it tests is the
// relay cluster and the client, not the WordPress version.

import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { ROOT, cleanup, person, shot, startNats, startSite, until } from './site.js';
import { connected, msg, open, send, startConversation, texts } from './ui.js';

const EXT = process.env.BM_EXT_SO || path.join(ROOT, 'target/release/bm_relay.so');
const LATEST = !!process.env.BM_WP_SRC;

/** @type {any} */ let site;
/** @type {any} */ let alice;
/** @type {any} */ let bob;
/** @type {{url: string, stop: () => void}|null} */ let nats = null;

/** A relay's authenticated sockets, from its admin /metrics (0 when it does not answer). */
async function sockets(adminPort) {
  try {
    const r = await fetch(`http://127.0.0.1:${adminPort}/metrics`, { signal: AbortSignal.timeout(2000) });
    const m = /^bm_relay_authenticated_connections (\d+)/m.exec(await r.text());
    return m ? Number(m[1]) : 0;
  } catch {
    return 0;
  }
}

before(async () => {
  if (LATEST) return;
  assert.ok(fs.existsSync(EXT), `${EXT} is missing: run \`make ext\``);
  nats = await startNats();
  const url = nats.url;
  // Both relays on the one nats-server; nginx in front (site.php BM_CLUSTER_LB).
  site = await startSite({ ext: EXT, env: { BM_CLUSTER_NATS: `${url} ${url}`, BM_CLUSTER_LB: '1' } });
  assert.ok(site.relay2?.lb, 'site.php started the balancer');
  [alice, bob] = await Promise.all([person(site, 'alice'), person(site, 'bob')]);
});

after(async () => {
  for (const p of [alice, bob]) {
    if (p) await shot(p.page, `failover-final-${p.login}`).catch(() => {});
  }
  await cleanup();
  if (site) await site.stop();
  if (nats) nats.stop();
});

test('relay 1 is SIGKILLed mid-conversation: pages move to relay 2 through nginx, and nothing is lost', { skip: LATEST && 'the cluster is tested on Debian\'s WordPress (make test-e2e)' }, async (t) => {
  const r1 = site.admin_port;
  const r2 = site.relay2.admin_port;
  await Promise.all([connected(alice), connected(bob)]);
  await startConversation(alice, 'bo', 'Bob', 'Failover');
  await bob.page.locator('#bm-chat .bmc-thread', { hasText: 'Failover' }).waitFor({ timeout: 10000 });
  await open(bob, 'Failover');
  await send(alice, 'one');
  await msg(bob, 'one').waitFor({ timeout: 10000 });

  // nginx spreads sockets and pushes round robin: make sure relay 1 holds
  // at least one of the two pages (reload Bob's until it does), or its
  // crash would move nobody.
  for (let i = 0; (await sockets(r1)) === 0; i++) {
    assert.ok(i < 8, 'no page landed on relay 1 after 8 reloads of Bob\'s');
    await bob.page.reload();
    await connected(bob);
    await open(bob, 'Failover');
  }
  const before = { r1: await sockets(r1), r2: await sockets(r2) };
  t.diagnostic(`before the crash: relay 1 holds ${before.r1} page(s), relay 2 ${before.r2}`);
  assert.equal(before.r1 + before.r2, 2, 'each page has one socket, on one of the relays');
  const reconnects = async () => (await alice.page.evaluate(() => window.bmChat.client.stats.reconnects)) + (await bob.page.evaluate(() => window.bmChat.client.stats.reconnects));
  const reconnectsBefore = await reconnects();

  const t0 = Date.now();
  await site.command('kill-relay');
  // Alice writes at once: stored by WordPress, pushed through nginx to the
  // surviving relay (or, for a page still reconnecting, caught up later).
  await send(alice, 'two');
  await until(async () => (await sockets(r2)) === 2, 30000, 'both pages on relay 2');
  await Promise.all([connected(alice), connected(bob)]);
  t.diagnostic(`both pages connected to relay 2 ${Date.now() - t0} ms after the SIGKILL`);
  assert.ok((await reconnects()) > reconnectsBefore, 'the pages on relay 1 reconnected');

  // Live again, through relay 2.
  await send(alice, 'three');
  await msg(bob, 'three').waitFor({ timeout: 10000 });
  await send(bob, 'four');
  await msg(alice, 'four').waitFor({ timeout: 10000 });
  // Every message once, in order, on both pages.
  const want = ['one', 'two', 'three', 'four'];
  await until(async () => JSON.stringify(await texts(bob)) === JSON.stringify(want), 10000, `Bob's page to show ${want}`);
  assert.deepEqual(await texts(bob), want);
  assert.deepEqual(await texts(alice), want);
  await shot(bob.page, 'failover-bob-after');
});
