// The page's static frame (bar, side pane, conversation pane, composer,
// live regions) and its status lines: the connection state (whose
// `data-state` and `data-transport` tests read), notices and errors, and
// the screen-reader announcement.

import { el } from './dom.js';
import { fmt } from './strings.js';
import { RestError } from './rest.js';

/** Methods of BmChat (installed by bm-chat.js): the frame and status lines. */
export const frame = {
  /** Builds the static frame of the page. */
  build() {
    const t = this.t;
    const uid = `bmc-${Math.random().toString(36).slice(2, 8)}`;
    this.els = {};
    const E = this.els;
    E.conn = el('span', { class: 'bmc-conn', role: 'status', 'data-state': 'connecting' }, t.connecting);
    E.notice = el('div', { class: 'bmc-notice', role: 'alert', hidden: true });
    E.announce = el('div', { class: 'bmc-sr', 'aria-live': 'polite', 'aria-atomic': 'true' });
    E.threadList = el('ul', { class: 'bmc-thread-list' });
    E.newBtn = el('button', { type: 'button', class: 'bmc-new', 'aria-expanded': 'false', onclick: () => this.toggleNewForm() }, t.newConversation);
    E.newForm = this.buildNewForm(uid);
    E.title = el('h3', { class: 'bmc-conv-title', id: `${uid}-title`, tabindex: '-1' });
    E.members = el('p', { class: 'bmc-members' });
    E.back = el('button', { type: 'button', class: 'bmc-back', onclick: () => this.showList() }, '‹ ', t.back);
    E.earlier = el('button', { type: 'button', class: 'bmc-earlier', hidden: true, onclick: () => this.loadEarlier().catch((e) => this.showError(e)) }, t.loadEarlier);
    E.list = el('ol', { class: 'bmc-messages', 'aria-labelledby': `${uid}-title` });
    E.scroller = el('div', { class: 'bmc-scroll' }, E.earlier, E.list);
    E.typing = el('p', { class: 'bmc-typing', 'aria-live': 'polite' });
    E.composer = this.buildComposer(uid);
    this.buildPins(uid);
    E.empty = el('p', { class: 'bmc-empty' }, t.pickThread);
    E.conv = el(
      'section',
      { class: 'bmc-conv', 'aria-labelledby': `${uid}-title` },
      el('header', { class: 'bmc-conv-head' }, E.back, el('div', {}, E.title, E.members)),
      E.pins,
      E.empty,
      E.scroller,
      E.typing,
      E.composer,
    );
    const nav = el('nav', { class: 'bmc-side', 'aria-label': t.conversations }, ...this.buildSearch(uid), E.newBtn, E.newForm, E.threadList);
    this.root.replaceChildren(
      el('div', { class: 'bmc' }, el('header', { class: 'bmc-bar' }, el('h2', {}, t.title), E.conn), E.notice, el('div', { class: 'bmc-body' }, nav, E.conv), E.announce),
    );
    this.buildCalls();
    this.renderConversation();
  },

  /** Visible connection state; `data-state` is what tests read. */
  setConn(state) {
    this.connState = state;
    const streaming = this.client?.transport === 'stream';
    const label = {
      connecting: this.t.connecting,
      connected: streaming ? this.t.connectedStream : this.t.connected,
      'offline-polling': this.t.offlinePolling,
      offline: this.t.offlineReconnecting,
      closed: this.t.closed,
      'no-relay': this.t.noRelay,
    }[state];
    this.els.conn.dataset.state = state;
    this.els.conn.dataset.transport = this.client ? this.client.transport : '';
    this.els.conn.textContent = label || state;
  },

  notice(text) {
    this.els.notice.textContent = text;
    this.els.notice.hidden = false;
    clearTimeout(this.noticeTimer);
    this.noticeTimer = setTimeout(() => (this.els.notice.hidden = true), 8000);
  },

  showError(e) {
    const msg = e instanceof RestError ? e.message : String(e && e.message ? e.message : e);
    this.notice(fmt(this.t.error, msg));
  },

  announce(text) {
    this.els.announce.textContent = text;
  },
};
