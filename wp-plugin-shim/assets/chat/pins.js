// Pinned messages: the pinned bar at the top of the open conversation
// (each pin's author and text; activating one scrolls to the message and
// focuses it, its own button unpins it), pinning and unpinning from a
// message's actions (POST/DELETE /messages/{id}/pin), the pushed
// `message.pin` / `message.unpin` events, and the text of pins older than
// the loaded history (GET /threads/{id}/pins). A thread's pin list comes
// whole in its REST shape and in every pin event, so the page always
// applies the latest list it has seen (by event number) and never adds up
// changes it may have missed.

import { el } from './dom.js';
import { fmt } from './strings.js';

/** Pages of history (50 each) loaded at most to reach a pinned message. */
const MAX_PAGES_TO_PIN = 20;

/** Methods of BmChat (installed by bm-chat.js): pinned messages. */
export const pins = {
  /** The pinned bar's frame (filled by renderPins), labelled by its heading. */
  buildPins(uid) {
    const E = this.els;
    E.pinsList = el('ul', { class: 'bmc-pins-list' });
    E.pins = el('section', { class: 'bmc-pins', 'aria-labelledby': `${uid}-pins`, hidden: true }, el('h4', { id: `${uid}-pins`, class: 'bmc-pins-title' }, this.t.pinned), E.pinsList);
    return E.pins;
  },

  /** True when message `id` of thread `t` is pinned. */
  isPinned(t, id) {
    return !!(t.pinned && t.pinned.includes(id));
  },

  /**
   * Sets a thread's pin list (REST shape, REST answer or pushed event).
   * `seq`: the thread's event number the list is as of; a list older than
   * one applied already is ignored (an event overtaken by a fresher
   * read). Re-renders the bar and the messages whose pin state changed.
   */
  setPinned(t, ids, seq = null) {
    if (seq != null) {
      if (Number(seq) < (t.pinSeq || 0)) return;
      t.pinSeq = Number(seq);
    }
    const before = t.pinned || [];
    const next = Array.isArray(ids) ? ids.map(Number) : [];
    t.pinned = next;
    if (!t.pinMsgs) t.pinMsgs = new Map();
    for (const id of [...t.pinMsgs.keys()]) if (!next.includes(id)) t.pinMsgs.delete(id);
    // Unchanged (a thread-list read, every poll without a relay): the bar
    // is left as it is, so a keyboard user's focus in it stays put.
    if (this.current !== t.id || (before.length === next.length && before.every((id, i) => id === next[i]))) return;
    const changed = [...before.filter((id) => !next.includes(id)), ...next.filter((id) => !before.includes(id))];
    for (const id of changed) {
      const m = t.messages.get(id);
      if (m) this.renderMessage(t, m);
    }
    const hadFocus = this.els.pins.contains(document.activeElement);
    this.renderPins();
    // The focused pin went away (unpinned here or elsewhere): focus the
    // next pin, or the composer when none is left, never the page's body.
    if (hadFocus && !this.els.pins.contains(document.activeElement)) (this.els.pins.hidden ? this.els.input : this.els.pinsList.querySelector('button'))?.focus();
  },

  /** Fetches the text of pins the page has not loaded (older than its history). */
  async loadPins(t) {
    if (!t.pinMsgs) t.pinMsgs = new Map();
    if (!t.pinned || t.pinned.every((id) => t.messages.has(id) || t.pinMsgs.has(id))) return;
    const r = await this.rest('GET', `/threads/${t.id}/pins`);
    for (const m of r.pinned) t.pinMsgs.set(m.id, m);
    if (this.current === t.id) this.renderPins();
  },

  /** The pinned bar of the open thread: newest pin first; hidden when none. */
  renderPins() {
    const E = this.els;
    const t = this.threads.get(this.current);
    const ids = t && t.pinned ? [...t.pinned].reverse() : [];
    // The bar takes height from the message list: a reader at its end stays there.
    const s = E.scroller;
    const atEnd = !s.hidden && s.scrollHeight - s.scrollTop - s.clientHeight < 80;
    E.pins.hidden = !ids.length;
    E.pinsList.replaceChildren(
      ...ids.map((id) => {
        const m = t.messages.get(id) || (t.pinMsgs && t.pinMsgs.get(id));
        const text = !m ? '…' : m.deleted ? this.t.deleted : m.text;
        const who = m ? (m.sender === this.me ? this.t.you : this.name(m.sender)) : '';
        // The accessible name holds the visible text (author: text), as
        // speech input users say what they see.
        const shown = who ? `${who}: ${text}` : text;
        return el(
          'li',
          { class: 'bmc-pin', dataset: { id: String(id) } },
          el(
            'button',
            { type: 'button', class: 'bmc-pin-show', 'aria-label': fmt(this.t.showPinned, shown), title: shown, onclick: () => this.showPinned(t, id) },
            who ? el('span', { class: 'bmc-author' }, `${who}: `) : null,
            el('span', { class: 'bmc-pin-text' }, text),
          ),
          el('button', { type: 'button', class: 'bmc-unpin', 'aria-label': fmt(this.t.unpinNamed, text), title: this.t.unpin, onclick: () => this.togglePin(t, id, false) }, this.t.unpin),
        );
      }),
    );
    if (atEnd) this.scrollToEnd();
  },

  /**
   * Scrolls to a pinned message and focuses it (loading earlier history
   * until it is there, bounded); a notice when it cannot be found.
   */
  async showPinned(t, id) {
    const find = () => this.els.list.querySelector(`li.bmc-msg[data-id="${id}"]`);
    let li = find();
    try {
      for (let i = 0; !li && t.hasMore && this.current === t.id && i < MAX_PAGES_TO_PIN; i++) {
        await this.loadEarlier();
        li = find();
      }
    } catch (e) {
      this.showError(e);
      return;
    }
    if (!li) {
      this.notice(this.t.pinnedGone);
      return;
    }
    li.setAttribute('tabindex', '-1');
    li.scrollIntoView({ block: 'center' });
    li.focus({ preventScroll: true });
    li.classList.add('bmc-flash');
    setTimeout(() => li.classList.remove('bmc-flash'), 1500);
  },

  /** Pins (`on`) or unpins message `id`; the bar follows WordPress's answer. */
  async togglePin(t, id, on) {
    try {
      const r = await this.rest(on ? 'POST' : 'DELETE', `/messages/${id}/pin`);
      this.setPinned(t, r.pinned);
    } catch (e) {
      this.showError(e);
    }
  },

  /** A pushed `message.pin` / `message.unpin`: the thread's new pin list. */
  onPinEvent(type, d) {
    const t = this.threads.get(Number(d.thread));
    if (!t) return;
    if (!t.pinMsgs) t.pinMsgs = new Map();
    if (d.message && d.message.id) t.pinMsgs.set(Number(d.message.id), d.message);
    this.setPinned(t, d.pinned, d.seq);
    if (Number(d.user) !== this.me && this.current === t.id) {
      const m = t.messages.get(Number(d.id)) || t.pinMsgs.get(Number(d.id));
      this.announce(type === 'message.pin' ? fmt(this.t.pinnedBy, this.name(Number(d.user)), m && !m.deleted ? m.text : '') : fmt(this.t.unpinnedBy, this.name(Number(d.user))));
    }
  },

  /**
   * A message changed (edited, deleted): the bar shows its new text; a
   * deleted message is no longer pinned (WordPress dropped its pin with
   * its meta).
   */
  pinTouched(t, id) {
    if (!this.isPinned(t, id)) return;
    const m = t.messages.get(id);
    if (m && m.deleted) this.setPinned(t, t.pinned.filter((x) => x !== id));
    else if (this.current === t.id) this.renderPins();
  },
};
