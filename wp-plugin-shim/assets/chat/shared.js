// One socket per browser (docs/CLIENT.md): the chat page's tabs of one user
// share one relay connection through a SharedWorker (bm-shared-worker.js).
// This starts or joins it; where SharedWorker is missing or the worker does
// not start, the page connects on its own, as it always did.

import { connectShared, sharedWorkerName } from '../bm-shared.js';

/**
 * The worker script's URL: through the import map when it lists it (the
 * plugin's version in the URL, so a plugin update gets a new worker), else
 * beside this module.
 */
function workerUrl() {
  try {
    return import.meta.resolve('../bm-shared-worker.js');
  } catch {
    return new URL('../bm-shared-worker.js', import.meta.url).href;
  }
}

/**
 * The chat page's (BmChat's, `chat`) use of the shared connection; called
 * by relay.js's startClient (functions, not BmChat methods: no line in
 * bm-chat.js for them).
 */
export const shared = {
  /**
   * The shared connection for the `POST /token` bundle `b` (its site, this
   * user's wire id, the relay URLs), or null: connect alone. `?bm_shared=0`
   * in the page URL turns it off (a way to compare, and to debug).
   * @returns {Promise<import('../bm-shared.js').SharedRelay|null>}
   */
  async openShared(chat, b) {
    if (new URLSearchParams(location.search).get('bm_shared') === '0') return null;
    const urls = Array.isArray(b.urls) && b.urls.length ? b.urls : [b.url];
    const user = chat.wire.users.wire(chat.me) ?? chat.me;
    return connectShared({
      workerUrl: workerUrl(),
      name: sharedWorkerName({ site: b.site, user, urls }),
      config: { url: b.url, urls, site: b.site },
      getToken: async () => (await chat.bundle(true)).raw.token,
    });
  },

  /**
   * Points the page's client at the shared connection: its transport and
   * relay URL are the worker's (the connection line shows the transport),
   * and it reconnects at once when
   * the worker's connection is back rather than after its own backoff.
   */
  useShared(chat, client, link) {
    // The page reads `client.transport` (frame.js) and `client.url`: the
    // worker's connection's, not the port's (always "websocket", and a URL
    // the tab's own client rotates through to no effect).
    Object.defineProperty(client, 'transport', { get: () => link.transport, configurable: true });
    const ownUrl = Object.getOwnPropertyDescriptor(Object.getPrototypeOf(client), 'url').get;
    Object.defineProperty(client, 'url', { get: () => link.url ?? ownUrl.call(client), configurable: true });
    link.on('transport', () => chat.onClientState(client.state));
    link.on('up', () => client.retryNow());
  },
};
