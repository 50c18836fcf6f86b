// What a person sees on the [bm_chat] page, and what they do there: the
// e2e tests' shared vocabulary (every check reads the page, not the code).

import fs from 'node:fs';
import path from 'node:path';
import { until } from './site.js';

/**
 * The current-WordPress run (`make test-e2e-latest`) uses a Playground build
 * that leaves out core scripts it serves from elsewhere (listed in its
 * wordpress-remote-asset-paths: wp-i18n, user-profile, admin-bar …): core
 * scripts that need them fail with "wp is not defined" on any page.
 */
const TRIMMED_WP = !!process.env.BM_WP_SRC && fs.existsSync(path.join(process.env.BM_WP_SRC, 'wordpress-remote-asset-paths'));
/** Page errors other than network noise (the relay being down, avatars of an offline machine). */
export const realErrors = (p) =>
  p.page.errors.filter((e) => !/Failed to load resource|WebSocket connection to .* failed/.test(e) && !(TRIMMED_WP && /^ReferenceError: wp is not defined$/.test(e)));

/** Texts of the stored messages shown in the open conversation, in order. */
export const texts = (p) => p.page.$$eval('#bm-chat .bmc-messages > li.bmc-msg:not(.bmc-pending) > .bmc-text', (els) => els.map((e) => e.textContent));
/** The visible connection state (data-state of the status line). */
export const conn = (p) => p.page.getAttribute('#bm-chat .bmc-conn', 'data-state');
export const escapeRe = (s) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
/** The list item of a stored message with exactly this text. */
export const msg = (p, text) => p.page.locator('#bm-chat .bmc-messages > li.bmc-msg:not(.bmc-pending)').filter({ has: p.page.locator('.bmc-text', { hasText: new RegExp(`^${escapeRe(text)}$`) }) });

/** Waits until the page shows `connected`. */
export async function connected(p, timeout = 15000) {
  await until(async () => (await conn(p)) === 'connected', timeout, `${p.login}'s page to show connected`);
}

/** Types a message and presses Enter; resolves once WordPress stored it (the page shows it with a status mark). */
export async function send(p, text) {
  const input = p.page.getByLabel('Message', { exact: true });
  await input.fill(text);
  await input.press('Enter');
  await msg(p, text).last().locator('.bmc-mark').waitFor({ timeout: 10000 });
}

/** Opens a conversation from the list by its title. */
export async function open(p, title) {
  await p.page.locator('#bm-chat .bmc-thread', { hasText: title }).click();
  await p.page.locator('#bm-chat .bmc-conv-title', { hasText: title }).waitFor({ timeout: 5000 });
}

/** Starts a conversation from `p`'s page with the person found by `search` (button "Add NAME"). */
export async function startConversation(p, search, name, subject) {
  const a = p.page;
  await a.getByRole('button', { name: 'New conversation' }).click();
  await a.getByLabel('Search people').fill(search);
  await a.getByRole('button', { name: `Add ${name}` }).click();
  await a.getByLabel('Subject (optional)').fill(subject);
  await a.getByRole('button', { name: 'Start conversation' }).click();
  await a.locator('#bm-chat .bmc-conv-title', { hasText: subject }).waitFor({ timeout: 5000 });
  return a.evaluate(() => window.bmChat.current);
}

/** Reacts to the message with this text through its "Add reaction" picker (one button per message, then the emoji). */
export async function react(p, text, emoji) {
  await msg(p, text).getByRole('button', { name: 'Add reaction' }).click();
  await msg(p, text).getByRole('button', { name: `React with ${emoji}` }).click();
}

/**
 * The chat page's URL with `bm_shared=0`: the page connects on its own
 * instead of through the tabs' SharedWorker, for tests that watch or route
 * the page's WebSocket with Playwright (which sees a page's sockets, not a
 * worker's).
 */
export function unshared(url) {
  const u = new URL(url);
  u.searchParams.set('bm_shared', '0');
  return u.href;
}
