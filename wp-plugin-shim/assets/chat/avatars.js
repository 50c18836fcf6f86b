// People's pictures on the chat page: WordPress's avatar URL of each
// member (get_avatar_url() in the REST person shape), shown beside their
// messages, in the thread list and in the conversation's header. The name
// is always written next to the picture, so the image is decorative
// (alt=""): a screen reader reads the name once, not twice. A picture that
// does not load (a private or offline site cannot reach the avatar
// service) is replaced by the person's initials, never a broken image.

import { el, initials } from './dom.js';

/** Methods of BmChat (installed by bm-chat.js): avatars. */
export const avatars = {
  /**
   * Remembers a member's avatar URL and own name from their REST shape
   * ({id, name, avatar}): the name for the initials, also ours (the page
   * calls us "You", whose initial would be the same for everyone).
   */
  rememberAvatar(p) {
    this.avatarUrls ??= new Map();
    this.avatarNames ??= new Map();
    if (p && typeof p.name === 'string' && p.name) this.avatarNames.set(Number(p.id), p.name);
    if (p && typeof p.avatar === 'string' && /^https?:\/\//.test(p.avatar)) this.avatarUrls.set(Number(p.id), p.avatar);
  },

  /**
   * A person's avatar: their picture, or their initials on a coloured disc
   * when there is none or it fails to load. Decorative (the name stands
   * beside it). `size` is a class suffix: `sm` (thread list, header) or `md`.
   */
  avatarNode(u, size = 'md') {
    const name = this.avatarNames?.get(Number(u)) || this.name(u);
    const url = this.avatarUrls?.get(Number(u));
    // Once a picture failed, the page does not ask for it again (each
    // failed request costs a timeout on an offline site).
    if (url && !this.avatarFailed?.has(url)) {
      return el('img', {
        class: `bmc-avatar bmc-avatar-${size}`,
        src: url,
        alt: '',
        width: '32',
        height: '32',
        loading: 'lazy',
        decoding: 'async',
        onerror: (ev) => {
          (this.avatarFailed ??= new Set()).add(url);
          ev.currentTarget.replaceWith(this.initialsNode(name, size));
        },
      });
    }
    return this.initialsNode(name, size);
  },

  /** The members' avatars in the conversation's header (their names follow as text). */
  memberAvatars(t) {
    return el('span', { class: 'bmc-member-avatars' }, ...(t.participants || []).slice(0, 8).map((u) => this.avatarNode(u, 'sm')));
  },

  /** The initials disc (aria-hidden: the name is written beside it). */
  initialsNode(name, size) {
    return el('span', { class: `bmc-avatar bmc-avatar-${size} bmc-avatar-initials`, 'aria-hidden': 'true' }, initials(name));
  },
};
