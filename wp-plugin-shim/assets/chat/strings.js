// The page's strings: English defaults (the shortcode passes translated
// ones in `config.strings`), sprintf-style formatting, and count-dependent
// strings from WordPress's own plural table.

/** Default strings; the shortcode passes translated ones in `config.strings`. */
export const DEFAULT_STRINGS = {
  title: 'Messages',
  conversations: 'Conversations',
  newConversation: 'New conversation',
  searchPeople: 'Search people',
  searchHint: 'Type at least two letters of a name.',
  noPeople: 'Nobody found.',
  add: 'Add %s',
  removeChosen: 'Remove %s',
  subject: 'Subject (optional)',
  firstMessage: 'First message (optional)',
  create: 'Start conversation',
  cancel: 'Cancel',
  noThreads: 'No conversations yet.',
  pickThread: 'Choose a conversation, or start a new one.',
  // Count-dependent strings: `forms` and, per count, which form
  // (`index`, from WordPress's _n(): see BM_Relay_Shortcode::plural());
  // without an index, English (one form for 1, the other for the rest).
  unread: { forms: ['%d unread message', '%d unread messages'] },
  online: 'online',
  offline: 'offline',
  back: 'Back to conversations',
  loadEarlier: 'Load earlier messages',
  message: 'Message',
  send: 'Send',
  sending: 'Sending…',
  sent: 'Sent',
  delivered: 'Delivered',
  read: 'Read',
  deliveredToOf: 'Delivered to %1$d of %2$d',
  readByCount: 'Read by %d',
  failed: 'Not sent',
  retry: 'Retry',
  edit: 'Edit',
  save: 'Save',
  del: 'Delete',
  confirmDelete: 'Delete this message?',
  deleted: 'Message deleted',
  edited: 'edited',
  react: 'React with %s',
  reactions: 'Reactions',
  typing: '%s is typing…',
  typingTwo: '%1$s and %2$s are typing…',
  typingMany: { forms: ['%d person is typing…', '%d people are typing…'] },
  newMessageFrom: 'New message from %1$s: %2$s',
  connecting: 'Connecting…',
  connected: 'Connected',
  connectedStream: 'Connected (streaming: WebSocket is blocked on this network)',
  offlinePolling: 'Offline — checking for messages every few seconds',
  offlineReconnecting: 'Offline — reconnecting',
  closed: 'Disconnected — reload the page',
  noRelay: 'Live updates are not available — checking for messages every few seconds',
  removed: 'You are no longer a member of “%s”.',
  error: 'Something went wrong: %s',
  you: 'You',
  someone: 'Someone',
  members: 'Members: %s',
  pinned: 'Pinned messages',
  pin: 'Pin',
  unpin: 'Unpin',
  showPinned: 'Show pinned message: %s',
  unpinNamed: 'Unpin: %s',
  pinnedBy: '%1$s pinned a message: %2$s',
  unpinnedBy: '%s unpinned a message',
  pinnedGone: 'That message is no longer in this conversation.',
  searchMessages: 'Search messages',
  searchButton: 'Search',
  searchClose: 'Close search',
  searchSearching: 'Searching…',
  searchFound: 'Messages found: %d',
  searchNone: 'No messages found.',
  searchMore: 'More results',
  attach: 'Attach files',
  attachments: 'Attachments',
  uploading: 'Uploading %s',
  removeFile: 'Remove %s',
  attachWait: 'Wait until the files are uploaded.',
  attachTooBig: '%1$s is too big: this site accepts files up to %2$s.',
  openImage: 'Open %s full size',
  fileLink: '%1$s (%2$s)',
  notifyOn: 'Turn on notifications',
  notifyLater: 'Not now',
  mentionedYou: '%s mentioned you',
  notifyFrom: '%1$s in %2$s',
  mentionMark: 'You were mentioned',
  mentionList: 'People in this conversation',
  addReaction: 'Add reaction',
  callVoice: 'Voice call',
  callVideo: 'Video call',
  callIncoming: '%s is calling you',
  callIncomingVideo: '%s is calling you (video)',
  callAccept: 'Answer',
  callDecline: 'Decline',
  callPanel: 'Call',
  callDuration: 'Call duration',
  callCalling: 'Calling %s…',
  callConnecting: 'Connecting…',
  callWith: 'In a call with %s',
  callMute: 'Mute',
  callCamera: 'Camera off',
  callHangup: 'Hang up',
  callDenied: 'The call needs your microphone: allow it in your browser (the icon in the address bar), then try again.',
  callDeniedVideo: 'A video call needs your microphone and camera: allow them in your browser (the icon in the address bar), then try again.',
  callNoDevice: 'No microphone or camera could be used: %s',
  callOffline: '%s is not online right now; they will see a missed call.',
  callNoAnswer: '%s did not answer.',
  callDeclined: '%s declined the call.',
  callEnded: 'Call ended (%s).',
  callCancelled: 'Call cancelled.',
  callElsewhere: 'The call was answered on another tab.',
  callOver: 'This call is over.',
  callFailed: 'The call could not connect.',
  callLog: 'Calls',
  callLogYou: 'You called',
  callLogThem: '%s called',
  callLogVoice: 'voice',
  callLogVideo: 'video',
  callLogItem: '%1$s (%2$s), %3$s: %4$s',
  callLogMissed: 'missed',
  callLogDeclined: 'declined',
  callLogNow: 'now',
};

/** sprintf for `%s` / `%d` (in order) and `%1$s` (numbered, for translations that reorder). */
export function fmt(s, ...args) {
  let i = 0;
  return String(s).replace(/%(?:(\d+)\$)?[sd]/g, (_, n) => String((n ? args[Number(n) - 1] : args[i++]) ?? ''));
}

/**
 * The form of a count-dependent string for `n`, formatted with `n`: the
 * page's table from WordPress's _n() for counts below 200, 100 + n % 100
 * above (PHP's BM_Relay_Shortcode::plural() says why that is exact).
 * A plain string (an older or filtered config) is used as it is.
 */
export function plural(p, n) {
  if (typeof p === 'string') return fmt(p, n);
  const forms = p && Array.isArray(p.forms) && p.forms.length ? p.forms : ['%d'];
  const i = Array.isArray(p.index) && p.index.length === 200 ? p.index[n < 200 ? n : 100 + (n % 100)] : n === 1 ? 0 : 1;
  return fmt(forms[Math.min(Number(i) || 0, forms.length - 1)], n);
}

/**
 * The strings WordPress's script translations translate: for each plain
 * string of `defaults` (English), its translation in the plugin's text
 * domain from `wp.i18n`, which the shortcode's classic script handle
 * `bm-relay-i18n` (assets/bm-i18n.js) loads with the JSON file that
 * wp_set_script_translations() finds (a language pack's
 * `bm-relay-LOCALE-<md5 of "assets/bm-i18n.js">.json`, or the plugin's own
 * languages/bm-relay-LOCALE-bm-relay-i18n.json). Only strings that have a
 * translation there are returned, so they win over the config's (PHP's
 * .mo, which may lag a JSON-only update) and the rest keep the config's.
 * Count-dependent strings stay PHP's (their table follows the locale's
 * plural rule). Empty without wp.i18n (a trimmed WordPress build, or a
 * site that dequeued it): the page then shows PHP's strings.
 */
export function scriptTranslations(defaults) {
  const i18n = globalThis.wp && globalThis.wp.i18n;
  if (!i18n || typeof i18n.__ !== 'function') return {};
  const out = {};
  for (const [key, english] of Object.entries(defaults)) {
    if (typeof english !== 'string') continue;
    const has = typeof i18n.hasTranslation === 'function' ? i18n.hasTranslation(english, undefined, 'bm-relay') : i18n.__(english, 'bm-relay') !== english;
    if (has) out[key] = i18n.__(english, 'bm-relay');
  }
  return out;
}
