// Delivery statuses and read receipts (issue #16). This page tells
// WordPress which messages of others reached it (POST /delivered: the
// newest message id received per thread, gathered for a second so a busy
// thread costs one request a second, not one a message; and one after
// each catch-up, from the thread list's last messages). The other members'
// marks come from the thread's REST shape (`participants[]`
// `last_delivered_id` / `last_read_id`, so they survive a reload) and then
// from pushed `delivered` and `read` events. Reading implies delivered.
// Under our own messages: in a conversation of two, ✓ sent, ✓✓ delivered,
// ✓✓ Read (the words are there for screen readers in every state); in a
// group, counts: "Delivered to 3 of 4 · Read by 2".

import { el } from './dom.js';
import { fmt } from './strings.js';

/**
 * How long acknowledgements gather before one request carries them (ms):
 * with it a page sends at most one POST /delivered a second, and WordPress
 * pushes at most one `delivered` event a second per thread for this member.
 */
const ACK_EVERY_MS = 1000;
/** Threads one request carries at most (BM_Relay_Receipts::MAX_THREADS). */
const ACK_MAX_THREADS = 100;

/** Methods of BmChat (installed by bm-chat.js): delivery statuses and read receipts. */
export const receipts = {
  /**
   * From a thread's REST shape: every other member's delivered mark and
   * our own; then acknowledges the thread's last message if this page
   * has it and WordPress does not know yet (the catch-up's ack).
   */
  mergeReceipts(t, th) {
    if (!t.deliveredBy) t.deliveredBy = new Map();
    for (const u of [...t.deliveredBy.keys()]) if (!t.participants.includes(u)) t.deliveredBy.delete(u);
    for (const p of th.participants) {
      if (p.last_delivered_id == null) continue;
      const v = Number(p.last_delivered_id);
      if (p.id === this.me) t.myDelivered = Math.max(t.myDelivered || 0, v);
      else t.deliveredBy.set(p.id, Math.max(t.deliveredBy.get(p.id) || 0, v));
    }
    if (th.last_message) this.noteReceived(t, th.last_message);
  },

  /**
   * A message of someone else's reached this page (pushed, caught up or
   * listed): queue its acknowledgement unless WordPress has it delivered
   * or read for us already. Sent within ACK_EVERY_MS with the rest.
   */
  noteReceived(t, m) {
    if (!m || m.sender === this.me || !(t.participants || []).includes(this.me)) return;
    const id = Number(m.id);
    if (!Number.isSafeInteger(id) || id <= Math.max(t.myDelivered || 0, t.lastReadId || 0)) return;
    if (!this.acks) this.acks = new Map();
    if (id <= (this.acks.get(t.id) || 0)) return;
    this.acks.set(t.id, id);
    if (!this.ackTimer) this.ackTimer = setTimeout(() => this.flushAcks(), ACK_EVERY_MS);
  },

  /** Sends the gathered acknowledgements: one POST /delivered. */
  async flushAcks() {
    this.ackTimer = null;
    if (!this.acks || !this.acks.size) return;
    // A thread read meanwhile (the open one: its read mark goes ~300 ms
    // after a message arrives) is delivered already: no request for it.
    for (const [id, upto] of [...this.acks]) {
      const t = this.threads.get(id);
      if (!t || upto <= Math.max(t.myDelivered || 0, t.lastReadId || 0)) this.acks.delete(id);
    }
    const batch = [...this.acks].slice(0, ACK_MAX_THREADS);
    for (const [id] of batch) this.acks.delete(id);
    if (!batch.length) return;
    if (this.acks.size) this.ackTimer = setTimeout(() => this.flushAcks(), ACK_EVERY_MS);
    try {
      const r = await this.rest('POST', '/delivered', { threads: Object.fromEntries(batch) });
      for (const x of r.marks || []) {
        const t = this.threads.get(Number(x.thread));
        if (t) t.myDelivered = Math.max(t.myDelivered || 0, Number(x.last_delivered_id));
      }
    } catch {
      // Not stored (offline, left the thread meanwhile): the next catch-up
      // lists the thread's last message again and acknowledges it then.
    }
  },

  /** A pushed `delivered` event: a member's browser received up to `message_id`. */
  onDelivered(d) {
    const t = this.threads.get(Number(d.thread));
    if (!t) return;
    const u = Number(d.user);
    const id = Number(d.message_id);
    if (u === this.me) {
      // Another tab of ours acknowledged it: nothing to send from here.
      t.myDelivered = Math.max(t.myDelivered || 0, id);
      return;
    }
    if (!t.deliveredBy) t.deliveredBy = new Map();
    t.deliveredBy.set(u, Math.max(t.deliveredBy.get(u) || 0, id));
    if (this.current === t.id) this.renderMarks(t);
  },

  /**
   * How many of the other members have one of our messages delivered and
   * read (read counts as delivered), out of how many. Members only: one
   * who left takes their marks along.
   */
  receiptCounts(t, m) {
    const others = (t.participants || []).filter((u) => u !== this.me);
    let delivered = 0;
    let read = 0;
    for (const u of others) {
      const r = t.readBy.get(u) || 0;
      if (r >= m.id) read++;
      if (Math.max(r, (t.deliveredBy && t.deliveredBy.get(u)) || 0) >= m.id) delivered++;
    }
    return { delivered, read, of: others.length };
  },

  /** Sent, delivered (to anyone) or read (by anyone). */
  receiptStatus(t, m) {
    const c = this.receiptCounts(t, m);
    return c.read ? 'read' : c.delivered ? 'delivered' : 'sent';
  },

  /** The status mark under one of our messages. */
  markNode(t, m) {
    const mark = el('span', { class: 'bmc-mark' });
    this.fillMark(mark, t, m);
    return mark;
  },

  /**
   * (Re)fills a status mark: ✓ or ✓✓ (hidden from screen readers) and the
   * words, shown in a group ("Delivered to 2 of 3 · Read by 1") and for
   * "Read", for screen readers only otherwise. Left alone when unchanged.
   */
  fillMark(mark, t, m) {
    const c = this.receiptCounts(t, m);
    const s = c.read ? 'read' : c.delivered ? 'delivered' : 'sent';
    const group = c.of > 1;
    let words = this.t[s];
    if (group && c.delivered) words = fmt(this.t.deliveredToOf, c.delivered, c.of) + (c.read ? ` · ${fmt(this.t.readByCount, c.read)}` : '');
    const key = `${s}|${words}`;
    if (mark.dataset.key === key) return;
    mark.dataset.key = key;
    mark.dataset.status = s;
    mark.dataset.delivered = String(c.delivered);
    mark.dataset.read = String(c.read);
    mark.title = words;
    mark.replaceChildren(
      el('span', { class: 'bmc-tick', 'aria-hidden': 'true' }, s === 'sent' ? '✓' : '✓✓'),
      el('span', { class: group || s === 'read' ? 'bmc-mark-label' : 'bmc-mark-label bmc-sr' }, words),
    );
  },
};
