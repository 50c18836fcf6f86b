// The thread list view (the side pane): one button per thread, kept and
// updated in place (focus and clicks survive updates), with presence dot,
// preview and unread badge; and, at phone width, the way back to it.

import { el } from './dom.js';
import { plural } from './strings.js';

/** A files-only message in the list: its files' names after a paper clip. */
const filesPreview = (m) => (Array.isArray(m.attachments) && m.attachments.length ? `📎 ${m.attachments.map((a) => a.name).join(', ')}` : '');

/** Methods of BmChat (installed by bm-chat.js): the thread list. */
export const threadList = {
  renderThreadList() {
    const list = this.sortedThreads();
    if (!list.length) {
      this.threadListSig = null;
      this.threadItems = new Map();
      this.els.threadList.replaceChildren(el('li', { class: 'bmc-none' }, this.t.noThreads));
      return;
    }
    const rows = list.map((t) => {
      const others = (t.participants || []).filter((u) => u !== this.me);
      const last = t.lastMessage;
      return {
        t,
        others,
        title: this.threadTitle(t),
        online: others.some((u) => t.online.has(u)),
        preview: last ? (last.deleted ? this.t.deleted : `${this.name(last.sender)}: ${last.text || filesPreview(last)}`) : '',
      };
    });
    // Touch the DOM only when something visible changed.
    const sig = JSON.stringify(rows.map((r) => [r.t.id, r.title, r.online, r.preview, r.t.unread, r.t.mentioned, this.current === r.t.id]));
    if (sig === this.threadListSig) return;
    this.threadListSig = sig;
    // Buttons are kept (keyed by thread) and updated in place: a click
    // whose mousedown and mouseup straddle an update still lands, and the
    // keyboard focus stays where it was.
    this.threadItems ??= new Map();
    const list_ = this.els.threadList;
    const none = list_.querySelector('.bmc-none');
    if (none) none.remove();
    const keep = new Set();
    rows.forEach(({ t, others, title, online, preview }, i) => {
      keep.add(t.id);
      let li = this.threadItems.get(t.id);
      if (!li) {
        const btn = el('button', { type: 'button', class: 'bmc-thread', dataset: { thread: String(t.id) }, onclick: () => this.openThread(t.id) });
        li = el('li', {}, btn);
        this.threadItems.set(t.id, li);
      }
      const btn = li.firstChild;
      btn.setAttribute('aria-current', this.current === t.id ? 'true' : 'false');
      btn.replaceChildren(
        this.avatarNode(others[0] ?? this.me, 'sm'),
        el('span', { class: 'bmc-dot', dataset: { online: String(online) }, title: online ? this.t.online : this.t.offline }),
        el('span', { class: 'bmc-sr' }, online ? this.t.online : this.t.offline),
        el('span', { class: 'bmc-thread-main' }, el('span', { class: 'bmc-thread-title' }, title), el('span', { class: 'bmc-preview' }, preview)),
        ...this.mentionMark(t),
        // replaceChildren() would print a null as the text "null": no badge is no node.
        ...(t.unread > 0 ? [el('span', { class: 'bmc-unread', 'aria-label': plural(this.t.unread, t.unread) }, String(t.unread))] : []),
      );
      if (list_.children[i] !== li) {
        const hadFocus = li.contains(document.activeElement);
        list_.insertBefore(li, list_.children[i] || null);
        if (hadFocus) btn.focus();
      }
    });
    for (const [id, li] of this.threadItems) {
      if (!keep.has(id)) {
        li.remove();
        this.threadItems.delete(id);
      }
    }
  },

  /** Phone width: back from the conversation to the list. */
  showList() {
    this.root.classList.remove('bmc-show-conv');
    const cur = this.els.threadList.querySelector('[aria-current="true"]');
    (cur || this.els.newBtn).focus();
  },
};
