// End to end, issue #16's mentions, global unread count and browser
// notifications, in real headless Chromium against a real site (the
// extension, the relay, MariaDB): Alice mentions Bob through the
// composer's completion list with the keyboard only; Bob's thread list
// shows "@"; the admin bar count on his front page tab goes up live and
// down once he has read it; his hidden chat tab shows a notification
// (permission granted to his browser context, the Notification
// constructor recorded by an init script), whose click opens the thread.

import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { ROOT, cleanup, person, shot, startSite, until } from './site.js';
import { connected, msg, open, realErrors, send } from './ui.js';

const EXT = process.env.BM_EXT_SO || path.join(ROOT, 'target/release/bm_relay.so');

/** @type {any} */ let site;
/** @type {any} */ let alice;
/** @type {any} */ let bob;
/** Bob's second tab: the site's front page, with the admin bar. */
/** @type {any} */ let front;
let plans = 0;

/** Records every `new Notification(...)` of the page (title, options, the object). */
function recordNotifications() {
  const Real = window.Notification;
  window.__notes = [];
  window.Notification = class extends Real {
    constructor(title, options) {
      super(title, options);
      window.__notes.push({ title, body: options?.body, tag: options?.tag, n: this, at: Date.now() });
    }
  };
}

/** Makes the page believe its tab is hidden (or shown again), as a switch of tabs would. */
const setHidden = (page, hidden) =>
  page.evaluate((h) => {
    Object.defineProperty(document, 'hidden', { value: h, configurable: true });
    Object.defineProperty(document, 'visibilityState', { value: h ? 'hidden' : 'visible', configurable: true });
    document.dispatchEvent(new Event('visibilitychange'));
  }, hidden);

const notes = (p) => p.page.evaluate(() => window.__notes.map(({ title, body, tag }) => ({ title, body, tag })));
const count = () => front.locator('#wp-admin-bar-bm-relay-unread [data-bm-unread]');

before(async () => {
  assert.ok(fs.existsSync(EXT), `${EXT} is missing: run \`make ext\``);
  site = await startSite({ ext: EXT });
  [alice, bob] = await Promise.all([person(site, 'alice'), person(site, 'bob')]);
  await bob.context.grantPermissions(['notifications'], { origin: site.url });
  await bob.context.addInitScript(recordNotifications);
  await bob.page.reload();
  front = await bob.context.newPage();
  front.errors = [];
  front.on('pageerror', (e) => front.errors.push(String(e)));
  await front.goto(`${site.url}/`);
});

after(async () => {
  for (const p of [alice, bob]) {
    if (p) await shot(p.page, `notify-final-${p.login}`).catch(() => {});
  }
  await cleanup();
  if (site) await site.stop();
});

test('Alice mentions Bob with the keyboard; his list shows "@", his count goes up live, his hidden tab notifies', async (t) => {
  await Promise.all([connected(alice), connected(bob)]);
  // The admin bar on Bob's front page: the count, live through its own socket.
  await until(() => front.evaluate(() => window.bmUnread?.client?.state === 'connected'), 15000, "the front page's live count to connect");
  assert.equal(await count().getAttribute('data-count'), '0');
  // Bob's browser was granted notifications: no "Turn on" button for him.
  assert.equal(await bob.page.getByRole('button', { name: 'Turn on notifications' }).count(), 0);
  await setHidden(bob.page, true);

  const a = alice.page;
  await a.getByRole('button', { name: 'New conversation' }).click();
  for (const [q, name] of [['bo', 'Bob'], ['car', 'Carol']]) {
    await a.getByLabel('Search people').fill(q);
    await a.getByRole('button', { name: `Add ${name}` }).click();
  }
  await a.getByLabel('Subject (optional)').fill('Plans');
  await a.getByRole('button', { name: 'Start conversation' }).click();
  await a.locator('#bm-chat .bmc-conv-title', { hasText: 'Plans' }).waitFor({ timeout: 5000 });
  plans = await a.evaluate(() => window.bmChat.current);
  await bob.page.locator('#bm-chat .bmc-thread', { hasText: 'Plans' }).waitFor({ timeout: 5000 });

  // The completion: `@` offers the members but me; arrows move (and wrap),
  // Escape closes, typing narrows, Enter and Tab insert.
  const input = a.getByLabel('Message', { exact: true });
  await input.click();
  await input.pressSequentially('Lunch @');
  const list = a.getByRole('listbox', { name: 'People in this conversation' });
  await list.waitFor({ timeout: 2000 });
  assert.deepEqual(await list.getByRole('option').allTextContents(), ['Bob', 'Carol']);
  const selected = () => list.locator('[aria-selected="true"]').textContent();
  assert.equal(await selected(), 'Bob');
  await input.press('ArrowDown');
  assert.equal(await selected(), 'Carol');
  await input.press('ArrowDown');
  assert.equal(await selected(), 'Bob', 'wraps around');
  await input.press('ArrowUp');
  assert.equal(await selected(), 'Carol');
  assert.equal(await input.getAttribute('aria-activedescendant'), await list.locator('[aria-selected="true"]').getAttribute('id'));
  await input.press('Escape');
  assert.ok(await list.isHidden(), 'Escape closes the list');
  await input.pressSequentially('b');
  assert.deepEqual(await list.getByRole('option').allTextContents(), ['Bob'], 'typing narrows');
  await shot(a, 'notify-01-alice-completion');
  await input.press('Enter');
  assert.ok(await list.isHidden());
  assert.equal(await input.inputValue(), 'Lunch @Bob ', 'Enter inserted the name, did not send');
  await input.pressSequentially('and @c');
  await input.press('Tab');
  await input.pressSequentially('at noon?');
  const text = 'Lunch @Bob and @Carol at noon?';
  assert.equal(await input.inputValue(), text);
  const sentAt = Date.now();
  await input.press('Enter');
  await msg(alice, text).locator('.bmc-mark').waitFor({ timeout: 10000 });
  assert.equal(await msg(alice, text).locator('.bmc-mention').count(), 2, 'the mentions WordPress found, marked');

  // Bob: "@" and the count on the thread; the admin bar count, live.
  const row = bob.page.locator('#bm-chat .bmc-thread', { hasText: 'Plans' });
  await row.locator('.bmc-mention-mark', { hasText: '@' }).waitFor({ timeout: 5000 });
  assert.equal(await row.locator('.bmc-unread').textContent(), '1');
  await until(async () => (await count().getAttribute('data-count')) === '1', 5000, 'the admin bar count to show 1');
  t.diagnostic(`Enter on Alice's page → Bob's admin bar count: ${Date.now() - sentAt} ms (300 ms of it the debounce)`);
  assert.equal(await count().getAttribute('data-mentions'), '1');
  await shot(bob.page, 'notify-02-bob-list-mention');
  await shot(front, 'notify-03-bob-front-count');

  // The notification of the hidden tab: sender, "mentioned you", the text.
  await until(async () => (await notes(bob)).length === 1, 5000, "Bob's notification");
  t.diagnostic(`Enter on Alice's page → Bob's notification: ${(await bob.page.evaluate(() => window.__notes[0].at)) - sentAt} ms`);
  assert.deepEqual(await notes(bob), [{ title: 'Alice mentioned you', body: text, tag: `bm-thread-${plans}` }]);

  // Bob comes back; the notification's click opens the thread, which reads it.
  await setHidden(bob.page, false);
  await bob.page.evaluate(() => window.__notes[0].n.onclick());
  await bob.page.locator('#bm-chat .bmc-conv-title', { hasText: 'Plans' }).waitFor({ timeout: 5000 });
  const mine = msg(bob, text).locator('mark.bmc-mention-me');
  await mine.waitFor({ timeout: 5000 });
  assert.equal(await mine.textContent(), '@Bob', 'the mention of me is highlighted');
  assert.equal(await msg(bob, text).locator('.bmc-mention:not(mark)').textContent(), '@Carol');
  await until(async () => (await count().getAttribute('data-count')) === '0', 5000, 'the admin bar count back to 0');
  await until(async () => (await row.locator('.bmc-mention-mark').count()) === 0, 5000, 'the "@" to go');
  await shot(bob.page, 'notify-04-bob-read');

  // Hidden again: a plain message notifies with the thread's name; his own does not.
  await setHidden(bob.page, true);
  await bob.page.evaluate(() => window.bmChat.send('my own words'));
  await msg(alice, 'my own words').waitFor({ timeout: 5000 });
  await alice.page.getByLabel('Message', { exact: true }).fill('see you');
  await alice.page.getByLabel('Message', { exact: true }).press('Enter');
  await until(async () => (await notes(bob)).length === 2, 5000, "Bob's second notification");
  assert.deepEqual((await notes(bob))[1], { title: 'Alice in Plans', body: 'see you', tag: `bm-thread-${plans}` });
  await until(async () => (await count().getAttribute('data-count')) === '1', 5000, 'the count to show the unread message');
  assert.equal(await count().getAttribute('data-mentions'), '0');

  // Alice's browser was not asked yet: the page offers to, never on its
  // own; "Not now" is remembered across a reload.
  const later = a.getByRole('button', { name: 'Not now' });
  assert.equal(await a.getByRole('button', { name: 'Turn on notifications' }).count(), 1);
  await later.click();
  assert.equal(await later.count(), 0);
  await a.reload();
  await connected(alice);
  assert.equal(await a.getByRole('button', { name: 'Turn on notifications' }).count(), 0, 'the refusal is remembered');
  for (const p of [alice, bob]) assert.deepEqual(realErrors(p), [], `${p.login}'s page errors`);
  assert.deepEqual(realErrors({ page: front }), [], 'front page errors');
});

test("Bob's front page, open past its nonce's life, keeps its count live", async () => {
  // What 12-24 h do to a tab left on the front page: WordPress no longer
  // accepts its nonce. The count's reads (and its socket's next token)
  // get a fresh one by the login cookie.
  await open(alice, 'Plans');
  const before = Number(await count().getAttribute('data-count'));
  await front.evaluate(() => {
    window.bmUnread.cfg.nonce = '0123456789';
  });
  await send(alice, 'still counting');
  await until(async () => Number(await count().getAttribute('data-count')) === before + 1, 5000, `the admin bar count to go from ${before} to ${before + 1}`);
  const nonce = await front.evaluate(() => window.bmUnread.cfg.nonce);
  assert.match(nonce, /^[0-9a-f]{10}$/);
  assert.notEqual(nonce, '0123456789', 'a fresh nonce');
  assert.deepEqual(realErrors({ page: front }), [], 'front page errors');
});
