// One message in the conversation: its markup (avatar, meta line, body as
// text, reactions, actions: one method each), put in place in id order,
// and what can be done to it: react (the picker is picker.js), edit (an
// inline form), delete, pin (pins.js).

import { el } from './dom.js';

/** Methods of BmChat (installed by bm-chat.js): one message's view and actions. */
export const messages = {
  /** Inserts or replaces one message in the open thread, in id order. */
  renderMessage(t, m) {
    const list = this.els.list;
    const node = this.messageNode(t, m);
    const old = list.querySelector(`li[data-id="${m.id}"]`);
    if (old) {
      // Focus stays on the same control of the new node (the Pin button
      // just pressed, the reaction just toggled), else its first action.
      const f = old.contains(document.activeElement) ? document.activeElement : null;
      old.replaceWith(node);
      if (f) {
        const same = f.classList[0] ? [...node.querySelectorAll(`.${f.classList[0]}`)].find((b) => b.dataset.emoji === f.dataset.emoji) : null;
        (same || node.querySelector('.bmc-actions button'))?.focus();
      }
      return;
    }
    const nearEnd = this.els.scroller.scrollHeight - this.els.scroller.scrollTop - this.els.scroller.clientHeight < 80;
    const after = [...list.querySelectorAll('li.bmc-msg[data-id]')].find((li) => Number(li.dataset.id) > m.id);
    if (after) list.insertBefore(node, after);
    else {
      const firstPending = list.querySelector('li.bmc-pending');
      list.insertBefore(node, firstPending);
    }
    if (nearEnd || m.sender === this.me) this.scrollToEnd();
  },

  /**
   * The list item of one message (text as text): the author's avatar, then
   * the meta line, the body, the reactions and the actions, each built by a
   * method of its own so that a feature adds its part (attachments under
   * the body, receipts in the meta line, highlighted mentions in the body)
   * without touching the others.
   */
  messageNode(t, m) {
    const own = m.sender === this.me;
    const pinned = !m.deleted && this.isPinned(t, m.id);
    const head = this.messageMeta(t, m);
    const li = el(
      'li',
      { class: `bmc-msg bmc-has-avatar${own ? ' bmc-own' : ''}${m.deleted ? ' bmc-deleted' : ''}${pinned ? ' bmc-pinned' : ''}`, dataset: { id: String(m.id), sender: String(m.sender) } },
      this.avatarNode(m.sender),
      head,
    );
    li.append(this.messageBody(t, m));
    if (m.deleted) return li;
    if (m.attachments && m.attachments.length) li.append(this.attachmentsNode(m));
    const reactions = this.messageReactions(t, m);
    if (reactions) li.append(reactions);
    li.append(this.messageActions(t, m, li, { own, pinned }));
    if (own) head.append(' ', this.markNode(t, m));
    return li;
  },

  /** The meta line: author, time, "edited" (our own messages' status mark is appended by messageNode). */
  messageMeta(t, m) {
    const time = new Date(m.created * 1000);
    return el(
      'p',
      { class: 'bmc-meta' },
      el('span', { class: 'bmc-author' }, m.sender === this.me ? this.t.you : this.name(m.sender)),
      ' ',
      el('time', { datetime: time.toISOString() }, time.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' })),
      m.edited && !m.deleted ? el('span', { class: 'bmc-edited' }, ` (${this.t.edited})`) : null,
    );
  },

  /** The body: the text (as text), or the tombstone of a deleted message. */
  messageBody(t, m) {
    if (m.deleted) return el('p', { class: 'bmc-text bmc-tombstone' }, this.t.deleted);
    return el('p', { class: 'bmc-text' }, ...this.textWithMentions(m));
  },

  /** The reactions a message has, as counts that toggle ours on click; null when it has none. */
  messageReactions(t, m) {
    const reactions = (m.reactions || []).filter((r) => r.users.length);
    if (!reactions.length) return null;
    return el(
      'ul',
      { class: 'bmc-reactions', 'aria-label': this.t.reactions },
      ...reactions.map((r) => {
        const names = r.users.map((u) => (u === this.me ? this.t.you : this.name(u))).join(', ');
        return el(
          'li',
          {},
          el(
            'button',
            {
              type: 'button',
              class: 'bmc-reaction',
              'aria-pressed': String(r.users.includes(this.me)),
              title: names,
              'aria-label': `${r.emoji} ${r.users.length}: ${names}`,
              dataset: { emoji: r.emoji },
              onclick: () => this.react(t, m, r.emoji),
            },
            `${r.emoji} ${r.users.length}`,
          ),
        );
      }),
    );
  },

  /**
   * What can be done to a message: add a reaction (the picker, picker.js),
   * pin, and for our own edit and delete. The picker's button comes first:
   * after a re-render focus falls back to it (renderMessage).
   */
  messageActions(t, m, li, { own, pinned }) {
    const actions = el('div', { class: 'bmc-actions' });
    actions.append(this.reactionPicker(t, m));
    actions.append(el('button', { type: 'button', class: 'bmc-pin-toggle', onclick: () => this.togglePin(t, m.id, !pinned) }, pinned ? this.t.unpin : this.t.pin));
    if (own) {
      actions.append(el('button', { type: 'button', class: 'bmc-edit', onclick: () => this.editNode(t, m, li) }, this.t.edit));
      actions.append(el('button', { type: 'button', class: 'bmc-delete', onclick: () => this.remove(t, m) }, this.t.del));
    }
    return actions;
  },

  /** Replaces a message's text with an edit form. */
  editNode(t, m, li) {
    const id = `bmc-edit-${m.id}`;
    const area = el('textarea', { id, rows: '2', maxlength: '5000' });
    area.value = m.text;
    const form = el(
      'form',
      {
        class: 'bmc-editform',
        onsubmit: (ev) => {
          ev.preventDefault();
          if (area.value.trim() && area.value !== m.text) this.saveEdit(t, m, area.value);
          else this.renderMessage(t, t.messages.get(m.id));
        },
      },
      el('label', { for: id, class: 'bmc-sr' }, this.t.edit),
      area,
      el('div', { class: 'bmc-row' }, el('button', { type: 'submit' }, this.t.save), el('button', { type: 'button', onclick: () => this.renderMessage(t, t.messages.get(m.id)) }, this.t.cancel)),
    );
    area.addEventListener('keydown', (ev) => {
      if (ev.key === 'Escape') this.renderMessage(t, t.messages.get(m.id));
    });
    li.querySelector('.bmc-text').replaceWith(form);
    li.querySelector('.bmc-actions').hidden = true;
    area.focus();
  },

  /** Toggles one reaction of ours. */
  async react(t, m, emoji) {
    const mine = (m.reactions || []).some((r) => r.emoji === emoji && r.users.includes(this.me));
    try {
      const r = await this.rest('POST', `/messages/${m.id}/reactions`, { emoji, remove: mine });
      const cur = t.messages.get(m.id);
      if (cur) this.applyMessage(t, { ...cur, reactions: r.reactions }, { live: false });
    } catch (e) {
      this.showError(e);
    }
  },

  /** Deletes one of our messages (after a confirmation). */
  async remove(t, m) {
    if (!window.confirm(this.t.confirmDelete)) return;
    try {
      await this.rest('DELETE', `/messages/${m.id}`);
      const cur = t.messages.get(m.id);
      if (cur) this.applyMessage(t, { ...cur, text: null, deleted: true, reactions: [] }, { live: false });
      this.els.input.focus();
    } catch (e) {
      this.showError(e);
    }
  },

  /** Saves an edit of one of our messages. */
  async saveEdit(t, m, text) {
    try {
      const r = await this.rest('PATCH', `/messages/${m.id}`, { text });
      this.applyMessage(t, r.message, { live: false });
    } catch (e) {
      this.showError(e);
      this.renderMessage(t, t.messages.get(m.id));
    }
  },
};
