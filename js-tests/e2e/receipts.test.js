// End to end: delivery statuses and read receipts (issue #16) on the
// [bm_chat] page, in real Chromium against a real site (MariaDB, WordPress
// with the plugin, php -S with the extension, the relay). Alice writes to
// Bob while his page is closed (✓ sent); his page opens, receives it and
// acknowledges it to WordPress (✓✓ delivered on Alice's page, pushed); he
// opens the conversation (Read). In a group of three Alice sees counts
// ("Delivered to 2 of 2 · Read by 1"), and after a reload the same, from
// WordPress. Screenshots go to run/e2e-artifacts/ (r01…).

import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { ROOT, cleanup, person, shot, sleep, startSite, until } from './site.js';
import { connected, msg, open, realErrors, send } from './ui.js';

const EXT = process.env.BM_EXT_SO || path.join(ROOT, 'target/release/bm_relay.so');

/** @type {any} */ let site;
/** @type {any} */ let alice;
/** @type {any} */ let bob;
/** @type {any} */ let carol;

/** The status mark under a message of `p`'s own. */
const mark = (p, text) => msg(p, text).locator('.bmc-mark');

/** Waits until the mark under `text` on `p`'s page has this status (and these words). */
async function markIs(p, text, status, words = null) {
  let seen = '';
  await until(
    async () => {
      const m = mark(p, text);
      const s = await m.getAttribute('data-status');
      const w = await m.locator('.bmc-mark-label').textContent();
      seen = `${s} "${w}"`;
      return s === status && (words === null || w === words);
    },
    10000,
    `"${text}" on ${p.login}'s page to be ${status}${words ? ` "${words}"` : ''} (seen ${seen})`,
  );
}

/** Starts a conversation from Alice's page with these people and sends `text` in it. */
async function conversation(people, subject, text) {
  await alice.page.evaluate(([ids, s]) => window.bmChat.createThread(ids.map((id) => ({ id })), s, ''), [people.map((u) => site.users[u]), subject]);
  await alice.page.locator('#bm-chat .bmc-conv-title', { hasText: subject }).waitFor({ timeout: 5000 });
  await send(alice, text);
}

before(async () => {
  assert.ok(fs.existsSync(EXT), `${EXT} is missing: run \`make ext\``);
  site = await startSite({ ext: EXT });
  alice = await person(site, 'alice');
  await connected(alice);
});

after(async () => {
  for (const p of [alice, bob, carol]) {
    if (p) await shot(p.page, `r-final-${p.login}`).catch(() => {});
  }
  await cleanup();
  if (site) await site.stop();
});

test('1:1: ✓ sent while Bob’s page is closed, ✓✓ delivered once it is open, Read when he opens the conversation', async (t) => {
  await conversation(['bob'], 'Receipts', 'are you there?');
  await conversation(['bob', 'carol'], 'Trio', 'hello both');
  // The newest conversation, so Bob's and Carol's pages open it (and read
  // it), not the two above: those their pages only receive.
  await conversation(['bob', 'carol'], 'Lobby', 'welcome');
  await open(alice, 'Receipts');
  await sleep(1500);
  await markIs(alice, 'are you there?', 'sent', 'Sent');
  assert.equal(await mark(alice, 'are you there?').locator('.bmc-tick').textContent(), '✓');
  assert.equal(await mark(alice, 'are you there?').locator('.bmc-tick').getAttribute('aria-hidden'), 'true', 'screen readers read the word, not the tick');
  assert.ok(await mark(alice, 'are you there?').locator('.bmc-mark-label.bmc-sr').count(), '"Sent" is for screen readers only');
  await shot(alice.page, 'r01-alice-sent');

  bob = await person(site, 'bob');
  await connected(bob);
  await bob.page.locator('#bm-chat .bmc-conv-title', { hasText: 'Lobby' }).waitFor({ timeout: 5000 });
  // Bob's page has the message (the thread list's last message) and says so.
  await markIs(alice, 'are you there?', 'delivered', 'Delivered');
  assert.equal(await mark(alice, 'are you there?').locator('.bmc-tick').textContent(), '✓✓');
  await shot(alice.page, 'r02-alice-delivered');

  await open(bob, 'Receipts');
  await markIs(alice, 'are you there?', 'read', 'Read');
  await shot(alice.page, 'r03-alice-read');

  // Live: a message Bob's page receives while it shows another conversation.
  await open(bob, 'Lobby');
  const acks = [];
  bob.page.on('request', (r) => {
    if (r.method() === 'POST' && r.url().includes('/bm/v1/delivered')) acks.push(Date.now());
  });
  const burst = ['one', 'two', 'three', 'four', 'five', 'six'];
  const t0 = Date.now();
  for (const text of burst) await send(alice, text);
  const stored = Date.now();
  for (const text of burst) await markIs(alice, text, 'delivered', 'Delivered');
  const secs = (Date.now() - t0) / 1000;
  t.diagnostic(`${burst.length} messages in ${((stored - t0) / 1000).toFixed(1)} s: ${acks.length} POST /delivered from Bob's page; the last one ✓✓ on Alice's page ${Date.now() - stored} ms after it was stored`);
  // One acknowledgement a second at most, not one a message.
  assert.ok(acks.length <= Math.ceil(secs) + 1, `${acks.length} acknowledgements for ${burst.length} messages in ${secs.toFixed(1)} s`);
  assert.ok(acks.length < burst.length, `${acks.length} acknowledgements for ${burst.length} messages`);
  await markIs(alice, 'are you there?', 'read', 'Read');
});

test('group of three: counts, live, and the same after a reload', async () => {
  await open(alice, 'Trio');
  // Bob's page got it; Carol has no page yet.
  await markIs(alice, 'hello both', 'delivered', 'Delivered to 1 of 2');
  await shot(alice.page, 'r04-alice-group-delivered-1');

  carol = await person(site, 'carol');
  await connected(carol);
  await markIs(alice, 'hello both', 'delivered', 'Delivered to 2 of 2');
  await open(bob, 'Trio');
  await markIs(alice, 'hello both', 'read', 'Delivered to 2 of 2 · Read by 1');
  await shot(alice.page, 'r05-alice-group-read-1');

  await alice.page.reload();
  await connected(alice);
  await open(alice, 'Trio');
  // No event since the reload: the marks come from the thread's REST shape.
  await markIs(alice, 'hello both', 'read', 'Delivered to 2 of 2 · Read by 1');
  await open(alice, 'Receipts');
  await markIs(alice, 'are you there?', 'read', 'Read');
  await markIs(alice, 'six', 'delivered', 'Delivered');
  await shot(alice.page, 'r06-alice-after-reload');
  for (const p of [alice, bob, carol]) assert.deepEqual(realErrors(p), [], `${p.login}'s page: no script errors`);
});
