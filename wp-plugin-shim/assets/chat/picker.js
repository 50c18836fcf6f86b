// The reaction picker: one "Add reaction" button per message that opens a
// small menu of the quick reactions (instead of four buttons under every
// message). Keyboard: Enter/Space open it with focus on the first emoji,
// arrow keys (and Home/End) move between them, Escape or Tab away closes
// it and focus returns to the button; choosing an emoji reacts and returns
// focus to the button too. Only one picker is open on the page at a time,
// and a click elsewhere closes it. Reactions already on a message stay
// shown as counts under it (messages.js) and toggle on click.

import { el } from './dom.js';
import { fmt } from './strings.js';

/** Quick reactions the picker offers. */
export const QUICK_REACTIONS = ['👍', '❤️', '😂', '😮'];

/** Methods of BmChat (installed by bm-chat.js): the reaction picker. */
export const picker = {
  /**
   * The "Add reaction" button and its (closed) menu for message `m`. The
   * menu's buttons are built when it opens, so a closed picker adds no
   * controls to the page's tab order or to the accessibility tree.
   */
  reactionPicker(t, m) {
    const menu = el('div', { class: 'bmc-picker', role: 'group', 'aria-label': this.t.reactions, hidden: true });
    const trigger = el(
      'button',
      {
        type: 'button',
        class: 'bmc-add-reaction',
        'aria-haspopup': 'true',
        'aria-expanded': 'false',
        'aria-label': this.t.addReaction,
        title: this.t.addReaction,
        onclick: () => (menu.hidden ? this.openPicker(t, m, trigger, menu) : this.closePicker(true)),
      },
      el('span', { 'aria-hidden': 'true' }, '☺+'),
    );
    return el('span', { class: 'bmc-picker-wrap' }, trigger, menu);
  },

  /** Opens one message's picker (closing any other) and focuses its first emoji. */
  openPicker(t, m, trigger, menu) {
    this.closePicker(false);
    const buttons = QUICK_REACTIONS.map((emoji) =>
      el(
        'button',
        {
          type: 'button',
          class: 'bmc-quick',
          'aria-label': fmt(this.t.react, emoji),
          'aria-pressed': String((m.reactions || []).some((r) => r.emoji === emoji && r.users.includes(this.me))),
          dataset: { emoji },
          onclick: () => {
            this.closePicker(true);
            this.react(t, m, emoji);
          },
        },
        emoji,
      ),
    );
    menu.replaceChildren(...buttons);
    menu.hidden = false;
    trigger.setAttribute('aria-expanded', 'true');
    const onKey = (ev) => {
      const i = buttons.indexOf(document.activeElement);
      const to = { ArrowRight: i + 1, ArrowDown: i + 1, ArrowLeft: i - 1, ArrowUp: i - 1, Home: 0, End: buttons.length - 1 }[ev.key];
      if (ev.key === 'Escape') {
        ev.preventDefault();
        ev.stopPropagation();
        this.closePicker(true);
      } else if (to !== undefined && i >= 0) {
        ev.preventDefault();
        buttons[(to + buttons.length) % buttons.length].focus();
      }
    };
    // Focus leaving the picker (Tab, a click elsewhere) closes it.
    const onFocusOut = (ev) => {
      if (!ev.relatedTarget || !trigger.parentNode.contains(ev.relatedTarget)) this.closePicker(false);
    };
    const onDocClick = (ev) => {
      if (!trigger.parentNode.contains(ev.target)) this.closePicker(false);
    };
    menu.addEventListener('keydown', onKey);
    trigger.parentNode.addEventListener('focusout', onFocusOut);
    document.addEventListener('click', onDocClick, true);
    this.openPickerState = {
      trigger,
      close: () => {
        menu.removeEventListener('keydown', onKey);
        trigger.parentNode?.removeEventListener('focusout', onFocusOut);
        document.removeEventListener('click', onDocClick, true);
        menu.hidden = true;
        menu.replaceChildren();
        trigger.setAttribute('aria-expanded', 'false');
      },
    };
    buttons[0].focus();
  },

  /** Closes the open picker, if any; `refocus` puts focus back on its button. */
  closePicker(refocus) {
    const s = this.openPickerState;
    if (!s) return;
    this.openPickerState = null;
    s.close();
    if (refocus && s.trigger.isConnected) s.trigger.focus();
  },
};
