// Starting a conversation: the "new conversation" form (people search
// over GET /users, chosen people, subject, first message) and the
// POST /threads that creates it.

import { el, initials } from './dom.js';
import { fmt } from './strings.js';

/** Methods of BmChat (installed by bm-chat.js): the new-conversation form. */
export const newThread = {
  /** The "new conversation" form: user search, chosen people, subject. */
  buildNewForm(uid) {
    const t = this.t;
    const chosen = [];
    const search = el('input', { id: `${uid}-search`, type: 'search', autocomplete: 'off', 'aria-describedby': `${uid}-search-hint` });
    const results = el('ul', { class: 'bmc-results', 'aria-live': 'polite' });
    const chosenList = el('ul', { class: 'bmc-chosen' });
    const subject = el('input', { id: `${uid}-subject`, type: 'text', maxlength: '200' });
    const first = el('textarea', { id: `${uid}-first`, rows: '2', maxlength: '5000' });
    const createBtn = el('button', { type: 'submit', class: 'bmc-create', disabled: true }, t.create);
    const renderChosen = () => {
      chosenList.replaceChildren(
        ...chosen.map((p) =>
          el(
            'li',
            {},
            el(
              'button',
              {
                type: 'button',
                class: 'bmc-chip',
                'aria-label': fmt(t.removeChosen, p.name),
                onclick: () => {
                  chosen.splice(chosen.indexOf(p), 1);
                  renderChosen();
                  search.focus();
                },
              },
              p.name,
              ' ×',
            ),
          ),
        ),
      );
      createBtn.disabled = chosen.length === 0;
    };
    let seq = 0;
    const doSearch = async () => {
      const q = search.value.trim();
      const my = ++seq;
      if (q.length < 2) {
        results.replaceChildren();
        return;
      }
      try {
        const r = await this.rest('GET', `/users?search=${encodeURIComponent(q)}`);
        if (my !== seq) return;
        const users = r.users.filter((u) => !chosen.some((c) => c.id === u.id));
        results.replaceChildren(
          ...(users.length
            ? users.map((u) => {
                this.names.set(u.id, u.name);
                return el(
                  'li',
                  {},
                  el(
                    'button',
                    {
                      type: 'button',
                      class: 'bmc-person',
                      'aria-label': fmt(t.add, u.name),
                      onclick: () => {
                        chosen.push(u);
                        renderChosen();
                        search.value = '';
                        results.replaceChildren();
                        search.focus();
                      },
                    },
                    el('span', { class: 'bmc-avatar', 'aria-hidden': 'true' }, initials(u.name)),
                    u.name,
                  ),
                );
              })
            : [el('li', { class: 'bmc-none' }, t.noPeople)]),
        );
      } catch (e) {
        this.showError(e);
      }
    };
    let timer = null;
    search.addEventListener('input', () => {
      clearTimeout(timer);
      timer = setTimeout(doSearch, 250);
    });
    const form = el(
      'form',
      {
        class: 'bmc-newform',
        hidden: true,
        onsubmit: async (ev) => {
          ev.preventDefault();
          if (!chosen.length) return;
          createBtn.disabled = true;
          try {
            await this.createThread(chosen.slice(), subject.value.trim(), first.value.trim());
            chosen.length = 0;
            renderChosen();
            subject.value = first.value = search.value = '';
            results.replaceChildren();
            this.toggleNewForm(false);
          } catch (e) {
            this.showError(e);
          } finally {
            createBtn.disabled = chosen.length === 0;
          }
        },
      },
      el('label', { for: `${uid}-search` }, t.searchPeople),
      search,
      el('p', { id: `${uid}-search-hint`, class: 'bmc-hint' }, t.searchHint),
      results,
      chosenList,
      el('label', { for: `${uid}-subject` }, t.subject),
      subject,
      el('label', { for: `${uid}-first` }, t.firstMessage),
      first,
      el('div', { class: 'bmc-row' }, createBtn, el('button', { type: 'button', onclick: () => this.toggleNewForm(false) }, t.cancel)),
    );
    form.addEventListener('keydown', (ev) => {
      if (ev.key === 'Escape') {
        ev.preventDefault();
        this.toggleNewForm(false);
      }
    });
    form.focusFirst = () => search.focus();
    return form;
  },

  toggleNewForm(show) {
    const f = this.els.newForm;
    const open = show ?? f.hidden;
    const hadFocus = f.contains(document.activeElement);
    f.hidden = !open;
    this.els.newBtn.setAttribute('aria-expanded', String(open));
    if (open) f.focusFirst();
    // Closing moves the focus back to the button only from inside the form
    // (Cancel, Escape): after "Start conversation" the new thread's composer
    // already has it, and a person may be typing there by the time the
    // thread's first page of messages has loaded.
    else if (hadFocus) this.els.newBtn.focus();
  },

  /** Creates a thread with the chosen people. */
  async createThread(people, subject, text) {
    const body = { participants: people.map((p) => p.id) };
    if (subject) body.subject = subject;
    if (text) body.text = text;
    const r = await this.rest('POST', '/threads', body);
    this.mergeThread(r.thread);
    await this.bundle(true).catch(() => null);
    this.subscribe(r.thread.id);
    this.renderThreadList();
    await this.openThread(r.thread.id);
  },
};
