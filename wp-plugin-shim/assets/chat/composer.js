// The composer: its form (Enter sends, Shift+Enter breaks the line, each
// keystroke may announce typing), sending a message with a client id so
// the relay's echo and the POST's reply are one message, and the pending
// node (sending, or failed with a retry button) until WordPress stored it.

import { el } from './dom.js';

/** Methods of BmChat (installed by bm-chat.js): the composer. */
export const composer = {
  /** The composer form (sets els.input, els.sendBtn); Enter sends, Shift+Enter breaks the line. */
  buildComposer(uid) {
    const E = this.els;
    E.input = el('textarea', { id: `${uid}-input`, class: 'bmc-input', rows: '2', maxlength: '5000' });
    E.sendBtn = el('button', { type: 'submit', class: 'bmc-send' }, this.t.send);
    const form = el(
      'form',
      { class: 'bmc-composer', onsubmit: (ev) => this.onSubmit(ev) },
      el('label', { for: `${uid}-input`, class: 'bmc-sr' }, this.t.message),
      this.buildAttach(uid),
      E.input,
      E.sendBtn,
    );
    E.input.addEventListener('input', () => this.typing());
    E.input.addEventListener('keydown', (ev) => {
      if (ev.key === 'Enter' && !ev.shiftKey && !ev.isComposing) {
        ev.preventDefault();
        form.requestSubmit();
      }
    });
    return form;
  },

  onSubmit(ev) {
    ev.preventDefault();
    const text = this.els.input.value;
    // Files still uploading: the message waits for them (attachments.js).
    if (this.attachBusy()) return this.notice(this.t.attachWait);
    if (!text.trim() && !this.attachReady()) return;
    this.els.input.value = '';
    this.send(text);
  },

  /** Sends the composer's text as a new message. */
  async send(text, retryOf) {
    const t = this.threads.get(this.current);
    if (!t) return;
    // Uploaded files go with it (a retry sends the same ones).
    const files = retryOf ? retryOf.files || [] : this.takeAttachments(t.id);
    if (!text.trim() && !files.length) return;
    // The next keystroke announces typing again at once.
    this.typingSentAt = 0;
    const clientId = 'c' + Math.random().toString(36).slice(2) + Date.now().toString(36);
    t.pending ??= new Map();
    const pending = { clientId, text, files, node: null, thread: t.id };
    t.pending.set(clientId, pending);
    if (retryOf && retryOf.node) retryOf.node.remove();
    pending.node = this.pendingNode(pending, 'sending');
    this.els.list.append(pending.node);
    this.scrollToEnd();
    try {
      const body = { text, client_id: clientId };
      if (files.length) body.attachments = files.map((f) => f.id);
      const r = await this.rest('POST', `/threads/${t.id}/messages`, body);
      if (t.pending.has(clientId)) {
        t.pending.delete(clientId);
        pending.node.remove();
      }
      this.applyMessage(t, r.message, { live: false });
      this.renderMarks(t);
    } catch (e) {
      if (pending.node.isConnected) pending.node.replaceWith((pending.node = this.pendingNode(pending, 'failed')));
      this.showError(e);
    }
  },

  /** A message of ours not stored yet: sending, or failed with a retry button. */
  pendingNode(p, state) {
    const li = el('li', { class: 'bmc-msg bmc-own bmc-pending', dataset: { client: p.clientId, state } }, el('p', { class: 'bmc-meta' }, el('span', { class: 'bmc-author' }, this.t.you), ' ', el('span', { class: 'bmc-mark', dataset: { status: state } }, state === 'failed' ? this.t.failed : this.t.sending)), el('p', { class: 'bmc-text' }, p.text));
    if (state === 'failed') {
      li.append(
        el(
          'div',
          { class: 'bmc-actions' },
          el(
            'button',
            {
              type: 'button',
              onclick: () => {
                const t = this.threads.get(p.thread);
                if (t && t.pending) t.pending.delete(p.clientId);
                if (this.current === p.thread) this.send(p.text, p);
              },
            },
            this.t.retry,
          ),
        ),
      );
    }
    return li;
  },
};
