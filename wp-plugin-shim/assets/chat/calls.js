// Voice and video calls in a 1:1 thread (docs/CALLS.md): the call buttons
// in the conversation header, the incoming-call banner (on every open
// chat page of the callee), the call panel (timer, mute, camera off, hang
// up) and the thread's call log.
//
// WordPress holds the call's state: the invite and every change (answered,
// declined, missed, ended) are REST calls it stores and pushes as numbered
// thread events (`call.invite`, `call.update`), so every tab of the callee
// rings and all but the one that answered stop. The WebRTC negotiation —
// the SDP offer and answer and the ICE candidates — goes from page to page
// as `pub` hints sealed with the thread key: the relay forwards ciphertext
// and WordPress never sees them; nothing of it is stored. The media flow
// peer to peer, or through the site's TURN server with credentials
// WordPress mints for this user (GET /calls/ice).

import { el } from './dom.js';
import { fmt } from './strings.js';
import { RestError } from './rest.js';

/**
 * SDP travels in parts of at most this many characters: an offer with
 * video is 4–8 KB, and one part sealed stays under even a relay whose
 * `max_pub_ciphertext` is set as low as 4 KiB (16 KiB by default).
 * Candidates are not in it: they trickle as `call.ice` hints.
 */
const SDP_PART = 3000;
/** An SDP of more parts than this is refused (48 KB: no real offer is that large). */
const SDP_MAX_PARTS = 16;
/** Candidates gathered within this many ms travel in one hint (the relay allows 10 pubs/s). */
const ICE_BATCH_MS = 150;
/** At most this many candidates per hint. */
const ICE_PER_HINT = 8;
/** How long a call rings before the caller's page gives up, unless WordPress says otherwise (ms). */
const RING_MS = 45000;
/** States a call ends in. */
const ENDED = ['ended', 'declined', 'missed'];

/** `m:ss` (or `h:mm:ss`) of a number of seconds. */
function clock(s) {
  const n = Math.max(0, Math.floor(s));
  const hms = [Math.floor(n / 3600), Math.floor(n / 60) % 60, n % 60];
  const [m, sec] = hms.slice(1).map((x) => String(x).padStart(2, '0'));
  return hms[0] ? `${hms[0]}:${m}:${sec}` : `${hms[1]}:${sec}`;
}

/** Methods of BmChat (installed by bm-chat.js): calls. */
export const calls = {
  /** The call buttons, banner, panel and log, put into the frame built by build(). */
  buildCalls() {
    const t = this.t;
    const E = this.els;
    /** This tab's id: tells the user's own tabs which one answered, and addresses hints. */
    this.callTab = Array.from(crypto.getRandomValues(new Uint8Array(9)), (b) => b.toString(16).padStart(2, '0')).join('');
    this.call = null;
    this.ringing = null;
    this.ringMs = RING_MS;
    E.callVoice = el('button', { type: 'button', class: 'bmc-call-btn bmc-call-voice', hidden: true, onclick: () => this.startCall(false) }, t.callVoice);
    E.callVideo = el('button', { type: 'button', class: 'bmc-call-btn bmc-call-video', hidden: true, onclick: () => this.startCall(true) }, t.callVideo);
    E.callBannerText = el('span', { class: 'bmc-call-banner-text', id: 'bmc-call-banner-text' });
    E.callBanner = el(
      'div',
      { class: 'bmc-call-banner', role: 'alertdialog', 'aria-labelledby': 'bmc-call-banner-text', hidden: true },
      E.callBannerText,
      el('button', { type: 'button', class: 'bmc-call-accept', onclick: () => this.acceptCall() }, t.callAccept),
      el('button', { type: 'button', class: 'bmc-call-decline', onclick: () => this.declineCall() }, t.callDecline),
    );
    E.callStatus = el('span', { class: 'bmc-call-status', role: 'status' });
    E.callTimer = el('span', { class: 'bmc-call-timer', 'aria-label': t.callDuration });
    E.callRemote = el('video', { class: 'bmc-call-remote', autoplay: true, playsinline: true });
    E.callLocal = el('video', { class: 'bmc-call-local', autoplay: true, playsinline: true });
    E.callLocal.muted = true;
    E.callMute = el('button', { type: 'button', class: 'bmc-call-mute', 'aria-pressed': 'false', onclick: () => this.toggleTrack('audio', E.callMute) }, t.callMute);
    E.callCamera = el('button', { type: 'button', class: 'bmc-call-camera', 'aria-pressed': 'false', onclick: () => this.toggleTrack('video', E.callCamera) }, t.callCamera);
    E.callHangup = el('button', { type: 'button', class: 'bmc-call-hangup', onclick: () => this.hangUp() }, t.callHangup);
    E.callPanel = el(
      'section',
      { class: 'bmc-call', hidden: true, 'aria-label': t.callPanel },
      el('div', { class: 'bmc-call-head' }, E.callStatus, E.callTimer),
      el('div', { class: 'bmc-call-media' }, E.callRemote, E.callLocal),
      el('div', { class: 'bmc-call-controls' }, E.callMute, E.callCamera, E.callHangup),
    );
    E.callLogList = el('ul', { class: 'bmc-call-log-list' });
    E.callLog = el('details', { class: 'bmc-call-log', hidden: true }, el('summary', {}, t.callLog), E.callLogList);
    const head = this.root.querySelector('.bmc-conv-head');
    head.append(el('div', { class: 'bmc-call-btns' }, E.callVoice, E.callVideo));
    head.after(E.callPanel, E.callLog);
    this.root.querySelector('.bmc-bar').after(E.callBanner);
    // A page opened (or reloaded) while a call rings for us shows it.
    setTimeout(() => this.loadActiveCalls(), 0);
  },

  /** Asks WordPress for our ringing calls (a reload, a tab opened while it rings). */
  async loadActiveCalls() {
    try {
      // The threads first: they name the caller.
      if (this.loadingThreads) await this.loadingThreads.catch(() => {});
      const r = await this.rest('GET', '/calls/active');
      if (r.ring_seconds) this.ringMs = Number(r.ring_seconds) * 1000;
      for (const c of r.calls || []) if (c.callee === this.me && c.state === 'ringing') this.ring(c, '');
    } catch {
      // No banner: the next invite still rings.
    }
  },

  /** The other member of a 1:1 thread, or null (calls are between two people). */
  callPeer(t) {
    const others = (t && t.participants ? t.participants : []).filter((u) => u !== this.me);
    return t && t.participants && t.participants.length === 2 && others.length === 1 ? others[0] : null;
  },

  /** Shows the call buttons in a 1:1 thread (not during a call) and the open thread's call log. */
  renderCallButtons() {
    const E = this.els;
    if (!E.callVoice) return;
    const t = this.threads.get(this.current);
    const can = this.callPeer(t) != null && !this.call && typeof RTCPeerConnection === 'function';
    E.callVoice.hidden = E.callVideo.hidden = !can;
    if (t && this.callLogFor !== t.id) {
      this.callLogFor = t.id;
      this.loadCallLog(t.id);
    }
  },

  /** The thread's call log (newest first), shown under the header. */
  async loadCallLog(id) {
    let r;
    try {
      r = await this.rest('GET', `/threads/${id}/calls?limit=10`);
    } catch {
      return;
    }
    if (this.current !== id) return;
    const items = (r.calls || []).map((c) => {
      const who = c.caller === this.me ? this.t.callLogYou : fmt(this.t.callLogThem, this.name(c.caller));
      const when = new Date(c.created * 1000).toLocaleString();
      const outcome = c.state === 'ended' ? clock(c.duration || 0) : c.state === 'declined' ? this.t.callLogDeclined : c.state === 'missed' ? this.t.callLogMissed : this.t.callLogNow;
      return el('li', { class: 'bmc-call-entry', dataset: { state: c.state, call: String(c.id) } }, fmt(this.t.callLogItem, who, c.video ? this.t.callLogVideo : this.t.callLogVoice, when, outcome));
    });
    this.els.callLogList.replaceChildren(...items);
    this.els.callLog.hidden = !items.length;
  },

  /**
   * Microphone (and camera) first: a denied permission is said at once,
   * before anyone is called or anything answered. Null when refused.
   */
  async callMedia(video) {
    try {
      return await navigator.mediaDevices.getUserMedia({ audio: true, video });
    } catch (e) {
      const denied = e && (e.name === 'NotAllowedError' || e.name === 'SecurityError');
      this.notice(denied ? (video ? this.t.callDeniedVideo : this.t.callDenied) : fmt(this.t.callNoDevice, e && e.message ? e.message : String(e)));
      return null;
    }
  },

  /** Calls the other member of the open thread (voice, or video). */
  async startCall(video) {
    const t = this.threads.get(this.current);
    const peer = this.callPeer(t);
    if (this.call || peer == null) return;
    this.call = { id: null, thread: t.id, peer, video, role: 'caller', state: 'starting', early: [] };
    this.renderCallButtons();
    const local = await this.callMedia(video);
    if (!local) return this.endCallLocal();
    this.call.local = local;
    this.showCall('ringing', fmt(this.t.callCalling, this.name(peer)));
    let r;
    try {
      r = await this.rest('POST', `/threads/${t.id}/calls`, { video, tab: this.callTab });
    } catch (e) {
      this.endCallLocal();
      this.showError(e);
      return;
    }
    const c = this.call;
    if (!c) return;
    c.id = r.call.id;
    c.state = 'ringing';
    if (r.online === false || ENDED.includes(r.call.state)) {
      this.endCallLocal();
      this.notice(fmt(this.t.callOffline, this.name(peer)));
      this.loadCallLog(c.thread);
      return;
    }
    c.ringTimer = setTimeout(() => this.call === c && c.state === 'ringing' && this.hangUp(fmt(this.t.callNoAnswer, this.name(peer))), this.ringMs);
    // Events that came before our POST's answer (a quick callee).
    for (const [type, d] of c.early.splice(0)) this.onCallEvent(type, d);
  },

  /** A pushed `call.invite` / `call.update`: ring, stop ringing, connect or end. */
  onCallEvent(type, d) {
    const c = d && d.call;
    if (!c || (c.caller !== this.me && c.callee !== this.me)) return;
    const mine = this.call;
    if (mine && mine.id == null && mine.early && c.caller === this.me && c.thread === mine.thread) {
      mine.early.push([type, d]);
      return;
    }
    if (this.current === c.thread) this.loadCallLog(c.thread);
    if (type === 'call.invite') {
      if (c.callee === this.me && c.state === 'ringing') this.ring(c, d.tab || '');
      return;
    }
    if (this.ringing && this.ringing.id === c.id && c.state !== 'ringing') {
      // Answered here, on another tab of ours, declined or given up.
      this.stopRinging();
      if (c.state === 'active' && d.tab !== this.callTab) this.announce(this.t.callElsewhere);
    }
    if (!mine || mine.id !== c.id) return;
    if (c.state === 'active' && mine.role === 'caller' && !mine.ready) {
      clearTimeout(mine.ringTimer);
      mine.remoteTab = d.tab || '';
      this.showCall('connecting', this.t.callConnecting);
      mine.ready = this.connectCall(mine, true).catch(() => this.hangUp(this.t.callFailed));
      return;
    }
    if (ENDED.includes(c.state)) {
      const name = this.name(mine.peer);
      const said =
        c.state === 'declined' ? fmt(this.t.callDeclined, name) : c.state === 'missed' ? fmt(this.t.callNoAnswer, name) : fmt(this.t.callEnded, clock(c.duration || 0));
      this.endCallLocal();
      this.notice(said);
    }
  },

  /** The incoming-call banner (on every tab of ours; one answers). */
  ring(c, callerTab) {
    if (this.call || (this.ringing && this.ringing.id === c.id)) return;
    this.ringing = { ...c, callerTab };
    const E = this.els;
    E.callBannerText.textContent = fmt(c.video ? this.t.callIncomingVideo : this.t.callIncoming, this.name(c.caller));
    E.callBanner.hidden = false;
    E.callBanner.dataset.call = String(c.id);
    this.announce(E.callBannerText.textContent);
    // WordPress records it missed after the ringing time; stop showing it then.
    const left = Math.max(1000, c.created * 1000 + this.ringMs - Date.now());
    clearTimeout(this.ringTimer);
    this.ringTimer = setTimeout(() => this.ringing && this.ringing.id === c.id && this.stopRinging(), Math.min(left, this.ringMs));
  },

  stopRinging() {
    this.ringing = null;
    clearTimeout(this.ringTimer);
    this.els.callBanner.hidden = true;
  },

  /** Answers the ringing call on this tab: media first, then WordPress (which tells our other tabs). */
  async acceptCall() {
    const c = this.ringing;
    if (!c || this.call) return;
    const local = await this.callMedia(c.video);
    if (!local) return;
    let r;
    try {
      r = await this.rest('POST', `/calls/${c.id}/accept`, { tab: this.callTab });
    } catch (e) {
      local.getTracks().forEach((tr) => tr.stop());
      this.stopRinging();
      if (e instanceof RestError && e.code === 'bm_relay_call_over') this.notice(this.t.callOver);
      else this.showError(e);
      return;
    }
    this.stopRinging();
    const call = { id: r.call.id, thread: c.thread, peer: c.caller, video: c.video, role: 'callee', local, remoteTab: c.callerTab || '' };
    this.call = call;
    if (this.current !== c.thread && this.threads.has(c.thread)) await this.openThread(c.thread, { focus: false });
    this.showCall('connecting', this.t.callConnecting);
    call.ready = this.connectCall(call, false).catch(() => this.hangUp(this.t.callFailed));
  },

  async declineCall() {
    const c = this.ringing;
    if (!c) return;
    this.stopRinging();
    try {
      await this.rest('POST', `/calls/${c.id}/decline`, { tab: this.callTab });
    } catch (e) {
      if (!(e instanceof RestError && e.code === 'bm_relay_call_over')) this.showError(e);
    }
  },

  /**
   * The peer connection: ICE servers (TURN credentials minted for us) from
   * WordPress, our tracks, and — for the caller — the offer.
   */
  async connectCall(call, offer) {
    const ice = await this.rest('GET', '/calls/ice');
    if (this.call !== call) return;
    const pc = new RTCPeerConnection({ iceServers: ice.ice_servers || [], iceTransportPolicy: ice.ice_transport_policy === 'relay' ? 'relay' : 'all' });
    call.pc = pc;
    call.iceIn = [];
    call.iceOut = [];
    call.sdpIn = {};
    for (const tr of call.local.getTracks()) pc.addTrack(tr, call.local);
    this.els.callLocal.srcObject = call.video ? call.local : null;
    pc.ontrack = (e) => {
      this.els.callRemote.srcObject = e.streams[0] || new MediaStream([e.track]);
    };
    pc.onicecandidate = (e) => {
      if (!e.candidate || !e.candidate.candidate) return;
      call.iceOut.push(e.candidate.toJSON());
      if (!call.iceTimer) call.iceTimer = setTimeout(() => this.sendIce(call), ICE_BATCH_MS);
    };
    pc.onconnectionstatechange = () => {
      if (this.call !== call) return;
      if (pc.connectionState === 'connected' && !call.startedAt) {
        call.startedAt = Date.now();
        this.showCall('active', fmt(this.t.callWith, this.name(call.peer)));
        call.clock = setInterval(() => this.renderCallTimer(), 1000);
        this.renderCallTimer();
      } else if (pc.connectionState === 'failed') {
        this.hangUp(this.t.callFailed);
      }
    };
    if (offer) {
      const o = await pc.createOffer();
      await pc.setLocalDescription(o);
      await this.sendSdp(call, 'offer', o.sdp);
    }
  },

  /**
   * Sends an SDP in numbered parts of SDP_PART characters, its candidate
   * lines left out (they trickle as `call.ice`).
   */
  async sendSdp(call, kind, sdp) {
    const text = sdp
      .split(/\r\n/)
      .filter((l) => !l.startsWith('a=candidate:') && l !== 'a=end-of-candidates')
      .join('\r\n');
    const parts = Math.ceil(text.length / SDP_PART);
    if (parts > SDP_MAX_PARTS) {
      this.hangUp(this.t.callFailed);
      return;
    }
    for (let i = 0; i < parts; i++) {
      await this.callHint(call, 'call.sdp', { kind, part: i, parts, sdp: text.slice(i * SDP_PART, (i + 1) * SDP_PART) });
    }
  },

  /** Sends the candidates gathered since the last batch. */
  sendIce(call) {
    call.iceTimer = null;
    while (call.iceOut.length) this.callHint(call, 'call.ice', { c: call.iceOut.splice(0, ICE_PER_HINT) }).catch(() => {});
  },

  /** One negotiation hint to the peer's tab, sealed with the thread key. */
  callHint(call, type, data) {
    const wt = this.wire.threads.wire(call.thread);
    if (wt == null || !this.client) return Promise.reject(new Error('no relay'));
    return this.client.publish(wt, type, { call: call.id, from: this.callTab, to: call.remoteTab || '', ...data });
  },

  /** A `call.sdp` / `call.ice` hint from the peer's tab. */
  async onCallHint(h) {
    const d = h.data || {};
    const call = this.call;
    const from = this.wire.users.real(Number(h.from));
    if (!call || call.id == null || Number(d.call) !== call.id || from !== call.peer) return;
    if (d.to && d.to !== this.callTab) return;
    if (call.remoteTab && d.from !== call.remoteTab) return;
    if (!call.remoteTab) call.remoteTab = String(d.from || '');
    await call.ready;
    const pc = call.pc;
    if (!pc || this.call !== call) return;
    if (h.type === 'call.ice') {
      for (const c of Array.isArray(d.c) ? d.c : []) {
        if (pc.remoteDescription) await pc.addIceCandidate(c).catch(() => {});
        else call.iceIn.push(c);
      }
      return;
    }
    if (h.type !== 'call.sdp' || !['offer', 'answer'].includes(d.kind)) return;
    const parts = Number(d.parts);
    if (!(parts >= 1 && parts <= SDP_MAX_PARTS) || !(d.part >= 0 && d.part < parts)) return;
    const got = (call.sdpIn[d.kind] ||= new Array(parts));
    got[d.part] = String(d.sdp || '');
    if (got.filter((x) => x !== undefined).length < parts) return;
    const sdp = got.join('');
    delete call.sdpIn[d.kind];
    try {
      await pc.setRemoteDescription({ type: d.kind, sdp });
      for (const c of call.iceIn.splice(0)) await pc.addIceCandidate(c).catch(() => {});
      if (d.kind === 'offer') {
        const a = await pc.createAnswer();
        await pc.setLocalDescription(a);
        await this.sendSdp(call, 'answer', a.sdp);
      }
    } catch {
      this.hangUp(this.t.callFailed);
    }
  },

  /** Shows the call panel in a state (ringing, connecting, active). */
  showCall(state, text) {
    const E = this.els;
    E.callPanel.hidden = false;
    E.callPanel.dataset.state = state;
    E.callStatus.textContent = text;
    E.callCamera.hidden = !(this.call && this.call.video);
    E.callLocal.hidden = !(this.call && this.call.video);
    E.callRemote.hidden = !(this.call && this.call.video);
    if (state !== 'active') E.callTimer.textContent = '';
    this.renderCallButtons();
  },

  renderCallTimer() {
    const c = this.call;
    if (c && c.startedAt) this.els.callTimer.textContent = clock((Date.now() - c.startedAt) / 1000);
  },

  /** Mute (audio) or camera off (video): the tracks stay, disabled (they send silence/black). */
  toggleTrack(kind, btn) {
    const c = this.call;
    if (!c || !c.local) return;
    const off = btn.getAttribute('aria-pressed') !== 'true';
    for (const tr of c.local.getTracks()) if (tr.kind === kind) tr.enabled = !off;
    btn.setAttribute('aria-pressed', String(off));
  },

  /** Hangs up (or gives up ringing): WordPress records it and tells the peer. */
  async hangUp(said = null) {
    const c = this.call;
    if (!c) return;
    const seconds = c.startedAt ? (Date.now() - c.startedAt) / 1000 : null;
    this.endCallLocal();
    this.notice(said || (seconds != null ? fmt(this.t.callEnded, clock(seconds)) : this.t.callCancelled));
    if (c.id == null) return;
    try {
      await this.rest('POST', `/calls/${c.id}/hangup`, { tab: this.callTab });
    } catch (e) {
      this.showError(e);
    }
    if (this.current === c.thread) this.loadCallLog(c.thread);
  },

  /** Stops our media and the connection, hides the panel. */
  endCallLocal() {
    const c = this.call;
    this.call = null;
    if (c) {
      clearTimeout(c.ringTimer);
      clearTimeout(c.iceTimer);
      clearInterval(c.clock);
      if (c.local) c.local.getTracks().forEach((tr) => tr.stop());
      if (c.pc) c.pc.close();
    }
    const E = this.els;
    E.callRemote.srcObject = null;
    E.callLocal.srcObject = null;
    E.callPanel.hidden = true;
    E.callPanel.dataset.state = 'idle';
    for (const b of [E.callMute, E.callCamera]) b.setAttribute('aria-pressed', 'false');
    this.renderCallButtons();
  },
};
