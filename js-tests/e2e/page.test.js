// End to end, the page itself (issue #16 "The page" and "The settings
// page"): avatars beside messages, in the thread list and the header; the
// reaction picker used by keyboard alone (open, arrows, Escape, choose,
// focus back on its button); axe-core (npm, injected into the real page)
// finding no serious or critical violation in the chat's main states; a
// translation that exists only in the script translations' JSON showing on
// the page; and Settings → bm-relay: the verdict in words and a measured
// "Send test event" round trip to the admin's own browser.

import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { ROOT, cleanup, person, shot, startSite } from './site.js';
import { connected, msg, open, realErrors, send, startConversation } from './ui.js';

const EXT = process.env.BM_EXT_SO || path.join(ROOT, 'target/release/bm_relay.so');
const AXE = createRequire(import.meta.url).resolve('axe-core/axe.min.js');
/** The current-WordPress run's trimmed build has no wp-i18n (see ui.js): no script translations there. */
const TRIMMED_WP = !!process.env.BM_WP_SRC && fs.existsSync(path.join(process.env.BM_WP_SRC, 'wordpress-remote-asset-paths'));

/** @type {any} */ let site;
/** @type {any} */ let alice;
/** @type {any} */ let bob;

before(async () => {
  assert.ok(fs.existsSync(EXT), `${EXT} is missing: run \`make ext\``);
  site = await startSite({ ext: EXT });
  [alice, bob] = await Promise.all([person(site, 'alice'), person(site, 'bob')]);
});

after(async () => {
  for (const p of [alice, bob]) if (p) await shot(p.page, `page-final-${p.login}`).catch(() => {});
  await cleanup();
  if (site) await site.stop();
});

/**
 * axe-core's findings of impact serious or critical on the chat (the
 * `#bm-chat` element: the theme around it is not the plugin's), as
 * "rule: target" lines. No rule is excluded.
 */
async function axeFindings(page, what) {
  if (!(await page.evaluate(() => !!window.axe))) await page.addScriptTag({ path: AXE });
  const r = await page.evaluate(async () => {
    const res = await window.axe.run({ include: [['#bm-chat']] }, { resultTypes: ['violations'] });
    return res.violations.map((v) => ({ id: v.id, impact: v.impact, help: v.help, targets: v.nodes.map((n) => n.target.join(' ')).slice(0, 3) }));
  });
  const all = r.map((v) => `${v.impact} ${v.id}`);
  console.log(`# axe (${what}): ${all.length ? all.join(', ') : 'no violations'}`);
  return r.filter((v) => v.impact === 'serious' || v.impact === 'critical').map((v) => `${v.id} (${v.help}): ${v.targets.join(' | ')}`);
}

/** What has the keyboard focus: its class and accessible label. */
const focused = (p) => p.page.evaluate(() => ({ cls: document.activeElement?.className || '', label: document.activeElement?.getAttribute('aria-label') || document.activeElement?.textContent || '' }));

test('avatars, the reaction picker by keyboard, and axe-core: no serious or critical violation in the list, a conversation, the open picker', async () => {
  await Promise.all([connected(alice), connected(bob)]);
  assert.deepEqual(await axeFindings(alice.page, 'empty thread list'), []);
  await startConversation(alice, 'bob', 'Bob', 'Accessible');
  await send(alice, 'Can you read this?');
  await bob.page.locator('#bm-chat .bmc-thread', { hasText: 'Accessible' }).waitFor({ timeout: 10000 });
  await open(bob, 'Accessible');
  const m = msg(bob, 'Can you read this?');
  await m.waitFor({ timeout: 5000 });

  // Avatars: beside the message, in the thread list, in the header; a
  // picture with alt="" (the name is beside it) or, offline, initials.
  for (const where of [m, bob.page.locator('#bm-chat .bmc-thread').first(), bob.page.locator('#bm-chat .bmc-members')]) {
    const a = where.locator('.bmc-avatar').first();
    await a.waitFor({ timeout: 3000 });
    const tag = await a.evaluate((e) => e.tagName);
    if (tag === 'IMG') assert.equal(await a.getAttribute('alt'), '');
    else assert.equal(await a.getAttribute('aria-hidden'), 'true');
  }
  assert.match(await m.locator('.bmc-avatar').first().evaluate((e) => (e.tagName === 'IMG' ? 'img' : e.textContent)), /^(img|[A-Z]{1,2})$/, 'Alice\'s picture, or her initials');
  assert.deepEqual(await axeFindings(bob.page, 'open conversation'), []);

  // One "Add reaction" per message, no emoji buttons until it opens.
  assert.equal(await m.getByRole('button', { name: 'Add reaction' }).count(), 1);
  assert.equal(await m.locator('.bmc-quick').count(), 0, 'no four buttons under every message');
  const add = m.getByRole('button', { name: 'Add reaction' });
  await add.focus();
  await bob.page.keyboard.press('Enter');
  assert.equal(await add.getAttribute('aria-expanded'), 'true');
  assert.deepEqual(await focused(bob), { cls: 'bmc-quick', label: 'React with 👍' }, 'focus on the first emoji');
  assert.deepEqual(await axeFindings(bob.page, 'picker open'), []);
  await shot(bob.page, 'page-01-bob-picker-open');
  await bob.page.keyboard.press('ArrowRight');
  assert.equal((await focused(bob)).label, 'React with ❤️');
  await bob.page.keyboard.press('ArrowLeft');
  await bob.page.keyboard.press('ArrowLeft');
  assert.equal((await focused(bob)).label, 'React with 😮', 'arrows wrap around');
  await bob.page.keyboard.press('Escape');
  assert.equal(await add.getAttribute('aria-expanded'), 'false');
  assert.equal(await m.locator('.bmc-quick').count(), 0, 'Escape closes it');
  assert.equal((await focused(bob)).label, 'Add reaction', 'and focus returns to its button');

  // Choose ❤️ by keyboard: it is sent, Alice sees it, focus is back on the button.
  await bob.page.keyboard.press('Enter');
  await bob.page.keyboard.press('ArrowRight');
  await bob.page.keyboard.press('Enter');
  await msg(alice, 'Can you read this?').locator('.bmc-reaction', { hasText: '❤️ 1' }).waitFor({ timeout: 5000 });
  await m.locator('.bmc-reaction', { hasText: '❤️ 1' }).waitFor({ timeout: 5000 });
  assert.equal((await focused(bob)).label, 'Add reaction', 'focus stays on the message\'s picker button after the re-render');
  assert.equal(await m.locator('.bmc-reaction').getAttribute('aria-pressed'), 'true');
  assert.deepEqual(await axeFindings(alice.page, 'conversation with a reaction'), []);
  await shot(alice.page, 'page-02-alice-reaction');
  // The count toggles ours off on click.
  await m.locator('.bmc-reaction').click();
  await msg(alice, 'Can you read this?').locator('.bmc-reaction').waitFor({ state: 'detached', timeout: 5000 });
  assert.deepEqual(realErrors(alice), []);
  assert.deepEqual(realErrors(bob), []);
});

test('script translations: a string only the JSON of wp_set_script_translations translates shows on the page', { skip: TRIMMED_WP && 'the trimmed WordPress build has no wp-i18n' }, async () => {
  // A language pack's file name: the domain, the locale, and the md5 of
  // the script's path inside the plugin (what `wp i18n make-json` writes).
  const dir = path.join(site.docroot, 'wp-content/languages/plugins');
  const json = path.join(dir, `bm-relay-de_DE-${crypto.createHash('md5').update('assets/bm-i18n.js').digest('hex')}.json`);
  const mu = path.join(site.docroot, 'wp-content/mu-plugins/bm-locale-test.php');
  fs.mkdirSync(dir, { recursive: true });
  fs.mkdirSync(path.dirname(mu), { recursive: true });
  fs.writeFileSync(
    json,
    JSON.stringify({
      domain: 'messages',
      locale_data: { messages: { '': { domain: 'messages', lang: 'de_DE', 'plural-forms': 'nplurals=2; plural=(n != 1);' }, 'Add reaction': ['Reaktion hinzufügen'] } },
    }),
  );
  fs.writeFileSync(mu, "<?php\nadd_filter('locale', static fn() => 'de_DE');\n");
  try {
    await bob.page.reload();
    await open(bob, 'Accessible');
    const m = msg(bob, 'Can you read this?');
    await m.getByRole('button', { name: 'Reaktion hinzufügen' }).waitFor({ timeout: 10000 });
    assert.equal(await bob.page.evaluate(() => window.bmRelayI18n && window.bmRelayI18n.ready), true, 'the classic handle ran with wp.i18n');
    assert.equal(await bob.page.evaluate(() => window.bmChat.t.addReaction), 'Reaktion hinzufügen');
    assert.equal(await bob.page.evaluate(() => window.bmChat.t.send), 'Send', 'strings without a translation stay as they were');
    await shot(bob.page, 'page-03-bob-translated');
  } finally {
    fs.rmSync(json, { force: true });
    fs.rmSync(mu, { force: true });
  }
  await bob.page.reload();
  await open(bob, 'Accessible');
  await msg(bob, 'Can you read this?').getByRole('button', { name: 'Add reaction' }).waitFor({ timeout: 10000 });
});

test('the settings page: a verdict in words, live connections, and "Send test event" timed to the admin\'s browser; no relay key or secret', async () => {
  const admin = await person(site, 'admin');
  const page = admin.page;
  await page.goto(`${site.url}/wp-admin/options-general.php?page=bm-relay`);
  const verdict = page.locator('#bm-relay-verdict');
  await verdict.waitFor({ timeout: 10000 });
  assert.equal(await verdict.getAttribute('data-level'), 'working');
  assert.match(await verdict.locator('.bm-verdict-head').textContent(), /^Working: messages arrive instantly\.$/);
  // The browser half: the doctor's probes, then this page's own connection.
  await page.locator('#bm-relay-verdict .bm-verdict-browser[data-level="working"]').waitFor({ timeout: 20000 });
  await page.waitForFunction(() => document.getElementById('bm-relay-verdict').dataset.client === 'connected', null, { timeout: 20000 });
  assert.match(await page.locator('#bm-relay-status').textContent(), /[1-9]\d* browsers? connected to the relay now/, 'live connections (Alice\'s, Bob\'s and this page\'s)');
  await page.getByRole('button', { name: 'Send test event' }).click();
  const rt = page.locator('#bm-relay-roundtrip[data-result="arrived"]');
  await rt.waitFor({ timeout: 10000 });
  const text = await rt.textContent();
  assert.match(text, /^Test event arrived in \d+ ms\.$/);
  console.log(`# settings page: ${text}`);
  assert.equal(page.url(), `${site.url}/wp-admin/options-general.php?page=bm-relay`, 'no form post: the page timed it itself');
  const html = await page.content();
  assert.ok(!html.includes(site.relay_key), 'the relay key is not on the page');
  await page.locator('#bm-relay-verdict').scrollIntoViewIfNeeded();
  await shot(page, 'page-04-settings-verdict');
  assert.deepEqual(realErrors(admin), []);
});
