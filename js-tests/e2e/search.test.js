// End to end, message search (issue #16): Bob types a word from an old
// message into the search box above his thread list, gets the results
// (thread, sender, the snippet with the word marked), activates one, and
// the thread opens at that message — loaded from earlier history, since
// more than a page of newer messages came after it — focused and marked.
// Then a word from a thread he is not in finds nothing, and a two-letter
// query is refused with the plugin's own words.

import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { ROOT, cleanup, person, shot, startSite, until } from './site.js';
import { connected, realErrors, startConversation } from './ui.js';

const EXT = process.env.BM_EXT_SO || path.join(ROOT, 'target/release/bm_relay.so');

/** @type {any} */ let site;
/** @type {any} */ let alice;
/** @type {any} */ let bob;

before(async () => {
  assert.ok(fs.existsSync(EXT), `${EXT} is missing: run \`make ext\``);
  site = await startSite({ ext: EXT });
  [alice, bob] = await Promise.all([person(site, 'alice'), person(site, 'bob')]);
});

after(async () => {
  for (const p of [alice, bob]) {
    if (p) await shot(p.page, `search-final-${p.login}`).catch(() => {});
  }
  await cleanup();
  if (site) await site.stop();
});

/** Sends `texts` in thread `id` from `p`'s page, over its own REST calls. */
function sendAll(p, id, texts) {
  return p.page.evaluate(
    async ([thread, list]) => {
      for (const text of list) await window.bmChat.rest('POST', `/threads/${thread}/messages`, { text });
    },
    [id, texts],
  );
}

test('Bob searches a word of an older message, opens the result, and the thread shows that message', async () => {
  await Promise.all([connected(alice), connected(bob)]);
  const old = 'The spare key is under the <b>terracotta</b> flowerpot & the mat';
  const trip = await startConversation(alice, 'bo', 'Bob', 'Holiday plans');
  await sendAll(alice, trip, [old]);
  // More than the 50 messages a thread opens with came after it (each
  // person stays under the 30 a minute the plugin allows).
  await sendAll(alice, trip, Array.from({ length: 28 }, (_, i) => `Alice, later note ${i + 1}`));
  await sendAll(bob, trip, Array.from({ length: 28 }, (_, i) => `Bob, later reply ${i + 1}`));
  // A newer thread, so the one with the old message is not even open.
  await startConversation(alice, 'bo', 'Bob', 'Groceries');
  await sendAll(alice, await alice.page.evaluate(() => window.bmChat.current), ['milk, eggs, and a terracotta pot?']);

  const b = bob.page;
  await b.reload();
  await connected(bob);
  const box = b.getByRole('searchbox', { name: 'Search messages' });
  await box.fill('terraco');
  await box.press('Enter');
  const results = b.locator('#bm-chat .bmc-search-list .bmc-result');
  await until(async () => (await results.count()) === 2, 10000, 'two results');
  assert.equal(await b.locator('#bm-chat .bmc-search-status').textContent(), 'Messages found: 2');
  const hit = results.filter({ hasText: 'flowerpot' });
  assert.match(await hit.locator('.bmc-result-head').textContent(), /^Holiday plans · Alice · /);
  assert.equal(await hit.locator('.bmc-snippet').textContent(), old, 'the text as written: its markup shown, not applied');
  assert.deepEqual(await hit.locator('.bmc-snippet mark').allTextContents(), ['terracotta'], 'the word marked');
  assert.equal(await b.locator('#bm-chat .bmc-search-list b').count(), 0, 'no markup from the message');
  await shot(b, 'search-01-bob-results');

  // With the keyboard: Tab from the box reaches the results; Enter opens one.
  const flowerpot = await hit.getAttribute('data-id');
  await hit.focus();
  await b.keyboard.press('Enter');
  await b.locator('#bm-chat .bmc-conv-title', { hasText: 'Holiday plans' }).waitFor({ timeout: 5000 });
  const found = b.locator(`#bm-chat .bmc-messages > li.bmc-msg[data-id="${flowerpot}"]`);
  await until(async () => b.evaluate((id) => document.activeElement?.matches(`li.bmc-msg[data-id="${id}"]`) ?? false, flowerpot), 10000, 'focus on the found message');
  assert.equal(await found.evaluate((li) => li.classList.contains('bmc-found')), true, 'marked');
  assert.ok((await b.locator('#bm-chat .bmc-messages > li.bmc-msg').count()) > 50, 'earlier history was loaded to reach it');
  const inView = await found.evaluate((li) => {
    const s = li.closest('.bmc-scroll').getBoundingClientRect();
    const r = li.getBoundingClientRect();
    return r.top >= s.top && r.bottom <= s.bottom;
  });
  assert.ok(inView, 'scrolled into view');
  await shot(b, 'search-02-bob-at-the-message');

  // Escape closes the results and returns to the box.
  await box.focus();
  await b.keyboard.press('Escape');
  assert.equal(await b.locator('#bm-chat .bmc-search-results').isHidden(), true);
  assert.equal(await b.evaluate(() => document.activeElement?.type), 'search');
});

test('Bob finds nothing from threads he is not in; a two-letter query is refused in words', async () => {
  const carol = await person(site, 'carol');
  try {
    await connected(carol);
    const id = await startConversation(carol, 'al', 'Alice', 'Carol and Alice');
    await sendAll(carol, id, ['the zeppelin password is swordfish']);
    const b = bob.page;
    const box = b.getByRole('searchbox', { name: 'Search messages' });
    await box.fill('zeppelin');
    await box.press('Enter');
    await until(async () => (await b.locator('#bm-chat .bmc-search-status').textContent()) === 'No messages found.', 10000, 'no results');
    await box.fill('ok');
    await box.press('Enter');
    await until(async () => /at least one word of 3 letters/.test(await b.locator('#bm-chat .bmc-search-status').textContent()), 10000, 'the refusal');
    await shot(b, 'search-03-bob-too-short');
    assert.deepEqual(realErrors(bob), []);
  } finally {
    await carol.context.close();
  }
});
