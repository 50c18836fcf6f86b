// Stored events pushed by the relay (sealed by WordPress, opened by
// BmClient): each event type applied to the store. A new kind of event
// (a feature's own) gets its case here and its logic in its own module.

/** Methods of BmChat (installed by bm-chat.js): pushed events. */
export const events = {
  /** A stored event from the relay (or catch-up envelopes): apply it. */
  onEvent(ev) {
    const d = ev.data || {};
    this.notifyEvent(ev);
    if (d.seq != null && d.thread != null) this.noteSeq(Number(d.thread), Number(d.seq));
    switch (ev.type) {
      case 'message.new':
      case 'message.edit': {
        const t = this.threads.get(Number(d.thread));
        if (!t) {
          this.loadThreads().catch(() => {});
          return;
        }
        const { client_id: clientId, ...msg } = d;
        this.applyMessage(t, msg, { live: ev.type === 'message.new', clientId });
        this.pinTouched(t, msg.id);
        t.typing.delete(d.sender);
        this.renderTyping();
        return;
      }
      case 'message.delete': {
        const t = this.threads.get(Number(d.thread));
        const m = t && t.messages.get(Number(d.id));
        if (m) this.applyMessage(t, { ...m, text: null, deleted: true, reactions: [] }, { live: false });
        if (t && t.pinned && t.pinned.includes(Number(d.id))) this.setPinned(t, t.pinned.filter((x) => x !== Number(d.id)));
        return;
      }
      case 'message.pin':
      case 'message.unpin':
        this.onPinEvent(ev.type, d);
        return;
      case 'delivered':
        this.onDelivered(d);
        return;
      case 'call.invite':
      case 'call.update':
        this.onCallEvent(ev.type, d);
        return;
      case 'reaction': {
        const t = this.threads.get(Number(d.thread));
        const m = t && t.messages.get(Number(d.id));
        if (m) this.applyMessage(t, { ...m, reactions: d.reactions }, { live: false });
        return;
      }
      case 'read': {
        const t = this.threads.get(Number(d.thread));
        if (!t) return;
        if (Number(d.user) === this.me) {
          // Another tab of ours read it.
          t.lastReadId = Math.max(t.lastReadId || 0, Number(d.message_id));
          t.unread = 0;
          this.renderThreadList();
          return;
        }
        const prev = t.readBy.get(Number(d.user)) || 0;
        t.readBy.set(Number(d.user), Math.max(prev, Number(d.message_id)));
        t.online.add(Number(d.user));
        if (this.current === t.id) this.renderMarks(t);
        this.renderThreadList();
        return;
      }
      case 'participant.added':
      case 'thread.added':
      case 'thread.key': {
        const id = Number(d.thread && typeof d.thread === 'object' ? d.thread.id : d.keys ? d.keys.thread : d.thread);
        // New keys and thread tokens come with a new bundle.
        this.bundle(true)
          .catch(() => null)
          .then(() => this.rest('GET', `/threads/${id}`))
          .then((r) => {
            this.mergeThread(r.thread);
            this.subscribe(id);
            this.renderThreadList();
            if (this.current === id) this.renderHeader();
          })
          .catch(() => {});
        return;
      }
      case 'thread.removed':
        this.dropThread(Number(d.thread), true);
        if (this.client) this.client.forgetKeys();
        this.bundle(true).catch(() => {});
        return;
      default:
    }
  },
};
