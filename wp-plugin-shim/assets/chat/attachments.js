// Attachments: the composer's attach button (a real, labelled button that
// opens a hidden file input), each chosen file uploaded at once to
// POST /threads/{id}/attachments with its progress shown (a <progress>
// per file, removable), the uploaded files' ids sent with the next message,
// and a message's attachments in the thread: images as thumbnails (a link
// to the full size), other files as links with name and size. Files are
// fetched through the plugin's gated route (members only), which needs the
// page's REST nonce in the URL (an <img> sends no header); the URL a
// message carries has none, so it is the same for every member.

import { el } from './dom.js';
import { fmt } from './strings.js';
import { RestError } from './rest.js';

/** Largest thumbnail box in the thread (CSS px); the image keeps its ratio. */
const THUMB_BOX = 240;

/** A byte count in the reader's locale ("12 kB", "3.4 MB"). */
export function formatBytes(n) {
  const units = ['byte', 'kilobyte', 'megabyte', 'gigabyte'];
  let i = 0;
  let v = Number(n) || 0;
  while (v >= 1000 && i < units.length - 1) {
    v /= 1000;
    i++;
  }
  try {
    return new Intl.NumberFormat(undefined, { style: 'unit', unit: units[i], unitDisplay: 'short', maximumFractionDigits: i ? 1 : 0 }).format(v);
  } catch {
    return `${Math.round(v)} ${['B', 'kB', 'MB', 'GB'][i]}`;
  }
}

/** Methods of BmChat (installed by bm-chat.js): attachments. */
export const attachments = {
  /**
   * The composer's part: the list of chosen files, the hidden file input
   * and the attach button (sets els.attachList, els.fileInput, els.attachBtn).
   */
  buildAttach(uid) {
    const E = this.els;
    /** @type {Array<{key:string, file:File, thread:number, ref:any, state:string, node:HTMLElement, bar:HTMLProgressElement, xhr:XMLHttpRequest|null}>} */
    this.uploads = [];
    E.attachList = el('ul', { class: 'bmc-uploads', 'aria-label': this.t.attachments, hidden: true });
    E.fileInput = el('input', { type: 'file', id: `${uid}-file`, class: 'bmc-sr', multiple: true, tabindex: '-1', 'aria-hidden': 'true' });
    E.fileInput.addEventListener('change', () => {
      const files = [...E.fileInput.files];
      E.fileInput.value = '';
      for (const f of files) this.uploadFile(f);
    });
    E.attachBtn = el('button', { type: 'button', class: 'bmc-attach', 'aria-label': this.t.attach, title: this.t.attach, onclick: () => E.fileInput.click() }, el('span', { 'aria-hidden': 'true' }, '📎'));
    return [E.attachList, E.fileInput, E.attachBtn];
  },

  /** Starts uploading one chosen file for the open thread. */
  uploadFile(file) {
    const thread = this.current;
    if (!thread) return;
    const max = Number(this.cfg.attach_max) || 0;
    if (max && file.size > max) {
      this.notice(fmt(this.t.attachTooBig, file.name, formatBytes(max)));
      return;
    }
    const up = { key: Math.random().toString(36).slice(2), file, thread, ref: null, state: 'uploading', node: null, bar: null, xhr: null };
    up.bar = el('progress', { max: '100', value: '0', 'aria-label': fmt(this.t.uploading, file.name) });
    up.node = el(
      'li',
      { class: 'bmc-upload', dataset: { state: 'uploading' } },
      el('span', { class: 'bmc-upload-name' }, file.name),
      ' ',
      up.bar,
      el('button', { type: 'button', class: 'bmc-upload-remove', 'aria-label': fmt(this.t.removeFile, file.name), onclick: () => this.dropUpload(up) }, '×'),
    );
    this.uploads.push(up);
    this.els.attachList.append(up.node);
    this.els.attachList.hidden = false;
    this.sendUpload(up, true);
  },

  /** The upload request (XHR: fetch has no upload progress); one retry with a fresh nonce. */
  sendUpload(up, mayRetry) {
    const xhr = new XMLHttpRequest();
    up.xhr = xhr;
    xhr.open('POST', `${this.cfg.rest.replace(/\/$/, '')}/threads/${up.thread}/attachments`);
    xhr.setRequestHeader('X-WP-Nonce', this.cfg.nonce);
    xhr.responseType = 'json';
    xhr.upload.onprogress = (ev) => {
      if (ev.lengthComputable) up.bar.value = Math.round((ev.loaded / ev.total) * 100);
    };
    xhr.onload = async () => {
      const json = xhr.response || {};
      if (xhr.status === 201 && json.attachment) {
        up.ref = json.attachment;
        up.state = 'ready';
        up.bar.value = 100;
        up.node.dataset.state = 'ready';
        up.node.querySelector('.bmc-upload-name').textContent = `${up.ref.name} (${formatBytes(up.ref.size)})`;
        return;
      }
      if (mayRetry && xhr.status === 403 && json.code === 'bm_relay_bad_nonce' && (await this.refreshNonce())) {
        this.sendUpload(up, false);
        return;
      }
      this.dropUpload(up);
      this.showError(new RestError(xhr.status, json.code, `${up.file.name}: ${json.message || xhr.status}`));
    };
    xhr.onerror = () => {
      this.dropUpload(up);
      this.showError(new RestError(0, 'network', up.file.name));
    };
    const body = new FormData();
    body.append('file', up.file, up.file.name);
    xhr.send(body);
  },

  /** Removes a chosen file from the composer (aborting its upload). */
  dropUpload(up) {
    if (up.xhr && up.state === 'uploading') up.xhr.abort();
    up.state = 'dropped';
    up.node.remove();
    this.uploads = this.uploads.filter((u) => u !== up);
    this.els.attachList.hidden = !this.uploads.length;
  },

  /** True while a file of the open thread is still uploading (sending waits for it). */
  attachBusy() {
    return this.uploads.some((u) => u.state === 'uploading' && u.thread === this.current);
  },

  /** How many uploaded files the next message of the open thread would carry. */
  attachReady() {
    return this.uploads.filter((u) => u.state === 'ready' && u.thread === this.current).length;
  },

  /** The uploaded files for a message of thread `id` (references), taken out of the composer. */
  takeAttachments(id) {
    const mine = this.uploads.filter((u) => u.state === 'ready' && u.thread === id);
    for (const u of mine) this.dropUpload(u);
    return mine.map((u) => u.ref);
  },

  /** A gated attachment URL with the page's nonce (an <img> or a link sends no header). */
  attachmentUrl(url) {
    const u = new URL(url, location.href);
    u.searchParams.set('_wpnonce', this.cfg.nonce);
    return u.toString();
  },

  /** A message's attachments: thumbnails for images, links for other files. */
  attachmentsNode(m) {
    return el(
      'ul',
      { class: 'bmc-files', 'aria-label': this.t.attachments },
      ...m.attachments.map((a) => {
        if (a.thumb) {
          const w = Number(a.width) || THUMB_BOX;
          const h = Number(a.height) || THUMB_BOX;
          const scale = Math.min(1, THUMB_BOX / Math.max(w, h));
          return el(
            'li',
            { class: 'bmc-file bmc-file-image' },
            el(
              'a',
              { href: this.attachmentUrl(a.url), target: '_blank', rel: 'noopener', 'aria-label': fmt(this.t.openImage, a.name) },
              el('img', { src: this.attachmentUrl(a.thumb), alt: a.name, width: String(Math.round(w * scale)), height: String(Math.round(h * scale)), loading: 'lazy' }),
            ),
          );
        }
        return el(
          'li',
          { class: 'bmc-file' },
          el('a', { href: this.attachmentUrl(a.url), download: a.name, class: 'bmc-file-link' }, el('span', { 'aria-hidden': 'true' }, '📄 '), fmt(this.t.fileLink, a.name, formatBytes(a.size))),
        );
      }),
    );
  },
};
