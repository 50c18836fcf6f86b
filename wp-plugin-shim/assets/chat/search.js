// Message search: the search box above the thread list (a labelled
// `role=search` form: Enter searches, Escape closes the results and
// returns to the box), the results list (GET /search, 20 a page, "More
// results" for the next), and opening a result: its thread opens and
// scrolls to the message, loading earlier history as needed (pins.js's
// showPinned, bounded), which is focused and marked.
//
// The snippet comes from WordPress as escaped HTML whose only tags are
// <mark>; it is read with DOMParser (an inert document: nothing in it
// runs or loads) and rebuilt here from text nodes and <mark> elements, so
// the live page never takes HTML from the server, as everywhere else.

import { el } from './dom.js';
import { fmt } from './strings.js';
import { RestError } from './rest.js';

/** Results a page. */
const PER_PAGE = 20;

/** Methods of BmChat (installed by bm-chat.js): message search. */
export const search = {
  /** The search form and its results region, for the side pane (frame.js). */
  buildSearch(uid) {
    const E = this.els;
    const t = this.t;
    E.searchInput = el('input', {
      type: 'search',
      id: `${uid}-q`,
      class: 'bmc-search-q',
      placeholder: t.searchMessages,
      autocomplete: 'off',
      maxlength: '200',
      onkeydown: (e) => {
        if (e.key === 'Escape' && !E.searchResults.hidden) {
          e.preventDefault();
          this.closeSearch();
        }
      },
    });
    E.searchStatus = el('p', { class: 'bmc-search-status', id: `${uid}-search-status`, role: 'status' });
    E.searchList = el('ol', { class: 'bmc-search-list', 'aria-labelledby': `${uid}-search-status` });
    E.searchMore = el('button', { type: 'button', class: 'bmc-search-more', hidden: true, onclick: () => this.runSearch(this.searchState.q, this.searchState.page + 1) }, t.searchMore);
    E.searchResults = el(
      'section',
      {
        class: 'bmc-search-results',
        hidden: true,
        'aria-labelledby': `${uid}-search-status`,
        onkeydown: (e) => {
          if (e.key === 'Escape') {
            e.preventDefault();
            this.closeSearch();
          }
        },
      },
      E.searchStatus,
      E.searchList,
      el('div', { class: 'bmc-search-foot' }, E.searchMore, el('button', { type: 'button', class: 'bmc-search-close', onclick: () => this.closeSearch() }, t.searchClose)),
    );
    E.searchForm = el(
      'form',
      {
        class: 'bmc-search',
        role: 'search',
        'aria-label': t.searchMessages,
        onsubmit: (e) => {
          e.preventDefault();
          const q = E.searchInput.value.trim();
          if (q) this.runSearch(q, 1);
          else this.closeSearch();
        },
      },
      el('label', { for: `${uid}-q`, class: 'bmc-sr' }, t.searchMessages),
      E.searchInput,
      el('button', { type: 'submit', class: 'bmc-search-go' }, t.searchButton),
    );
    return [E.searchForm, E.searchResults];
  },

  /** Page `page` of the results for `q` (page 1 replaces the list, later ones append). */
  async runSearch(q, page) {
    const E = this.els;
    const seq = (this.searchSeq = (this.searchSeq || 0) + 1);
    E.searchResults.hidden = false;
    if (page === 1) {
      E.searchList.replaceChildren();
      E.searchStatus.textContent = this.t.searchSearching;
    }
    E.searchMore.hidden = true;
    let r;
    try {
      r = await this.rest('GET', `/search?q=${encodeURIComponent(q)}&page=${page}&per_page=${PER_PAGE}`);
    } catch (e) {
      if (seq !== this.searchSeq) return;
      // A refused query (too short, too long) is said where the results go.
      E.searchStatus.textContent = e instanceof RestError && e.status === 400 ? e.message : fmt(this.t.error, e.message);
      return;
    }
    if (seq !== this.searchSeq) return;
    this.searchState = { q, page };
    const focusAt = E.searchList.children.length;
    E.searchList.append(...r.results.map((hit) => this.renderResult(hit)));
    E.searchStatus.textContent = r.total ? fmt(this.t.searchFound, r.total) : this.t.searchNone;
    E.searchMore.hidden = !r.has_more;
    // "More results" went away under the keyboard: on to the first new result.
    if (page > 1) E.searchList.children[focusAt]?.querySelector('button')?.focus();
  },

  /** One result: thread, sender, date, and the snippet with its marks. */
  renderResult(hit) {
    const known = this.threads.get(hit.thread.id);
    const where = known ? this.threadTitle(known) : hit.thread.subject || `#${hit.thread.id}`;
    const who = hit.sender.id === this.me ? this.t.you : hit.sender.name;
    const when = new Date(hit.created * 1000).toLocaleString();
    return el(
      'li',
      {},
      el(
        'button',
        { type: 'button', class: 'bmc-result', dataset: { thread: String(hit.thread.id), id: String(hit.id) }, onclick: () => this.openResult(hit.thread.id, hit.id) },
        el('span', { class: 'bmc-result-head' }, el('span', { class: 'bmc-result-thread' }, where), ' · ', el('span', { class: 'bmc-author' }, who), ' · ', el('time', { datetime: hit.created_at }, when)),
        el('span', { class: 'bmc-snippet' }, ...snippetNodes(hit.snippet)),
      ),
    );
  },

  /**
   * Opens a result's thread (fetched first if the list does not have it)
   * and brings its message into view, focused and marked.
   */
  async openResult(threadId, id) {
    try {
      if (!this.threads.has(threadId)) {
        const r = await this.rest('GET', `/threads/${threadId}`);
        this.mergeThread(r.thread);
        this.renderThreadList();
      }
    } catch (e) {
      this.showError(e);
      return;
    }
    await this.openThread(threadId);
    const t = this.threads.get(threadId);
    if (!t || this.current !== threadId) return;
    for (const old of this.els.list.querySelectorAll('.bmc-found')) old.classList.remove('bmc-found');
    await this.showPinned(t, id);
    this.els.list.querySelector(`li.bmc-msg[data-id="${id}"]`)?.classList.add('bmc-found');
  },

  /** Hides the results and puts the keyboard back in the search box. */
  closeSearch() {
    this.searchSeq = (this.searchSeq || 0) + 1;
    this.els.searchResults.hidden = true;
    this.els.searchList.replaceChildren();
    this.els.searchInput.focus();
  },
};

/**
 * The snippet's text and <mark>s as nodes: the server's escaped HTML read
 * in an inert document; any other element there (there is none) would
 * count as its text only.
 */
function snippetNodes(html) {
  const doc = new DOMParser().parseFromString(`<body>${String(html)}</body>`, 'text/html');
  return [...doc.body.childNodes].map((n) => (n.nodeName === 'MARK' ? el('mark', {}, n.textContent) : document.createTextNode(n.textContent)));
}
