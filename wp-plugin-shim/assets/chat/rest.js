// The page's REST calls to the plugin's bm/v1 routes: the nonce header,
// one retry with a fresh nonce when a long-open tab's has expired, and
// RestError (the plugin's error code and HTTP status) for every non-2xx.
// WordPress is the page's only store: every write goes through here.

import { refreshNonce, withFreshNonce } from './unread.js';

/** A REST error with the plugin's code and HTTP status. */
export class RestError extends Error {
  constructor(status, code, message) {
    super(message || code || `HTTP ${status}`);
    this.status = status;
    this.code = code;
  }
}

/** Methods of BmChat (installed by bm-chat.js): the REST calls. */
export const rest = {
  /**
   * One bm/v1 call with the page's nonce; throws RestError on non-2xx. A
   * tab left open past the nonce's life (12-24 h) gets a fresh one for the
   * same login and tries once more (unread.js's withFreshNonce).
   */
  rest(method, route, body) {
    return withFreshNonce(this.cfg, () => this.restOnce(method, route, body));
  },

  /** A new `wp_rest` nonce (unread.js's refreshNonce); true when there is one. */
  refreshNonce() {
    return refreshNonce(this.cfg);
  },

  /** One bm/v1 call as it is, no retry. */
  async restOnce(method, route, body) {
    const url = this.cfg.rest.replace(/\/$/, '') + route;
    const init = { method, credentials: 'same-origin', headers: { 'X-WP-Nonce': this.cfg.nonce, Accept: 'application/json' } };
    if (body !== undefined) {
      init.headers['Content-Type'] = 'application/json';
      init.body = JSON.stringify(body);
    }
    let res;
    try {
      res = await fetch(url, init);
    } catch (e) {
      throw new RestError(0, 'network', String(e && e.message ? e.message : e));
    }
    let json;
    try {
      json = await res.json();
    } catch {
      json = null;
    }
    if (!res.ok) throw new RestError(res.status, json && json.code, json && json.message);
    return json;
  },
};
