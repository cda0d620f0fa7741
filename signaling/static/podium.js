// Podium browser SDK: join an audio room, publish the microphone, receive the slots.
//
// An ES module with no dependencies and no build step. It mirrors the Python
// client (signaling/client.py) and speaks the protocol in docs/protocol.md:
//
//   import { PodiumClient } from "/static/podium.js";
//   const client = await PodiumClient.connect("ws://127.0.0.1:7880/rtc", token);
//   client.attachAudio();                        // play every slot
//   client.on("slots", ({ slots }) => ...);      // who is in which slot
//   await client.raiseHand();
//   ...
//   await client.leave();
//
// The client watches its own links: a `ping` every `heartbeat` ms (browsers cannot
// send WebSocket pings) and the peer connection's state. When either dies it
// reconnects by itself with backoff and resumes its seat with the token the server
// handed out at join (in a cluster, through another node when its own is gone); a
// stalled media path is mended by an ICE restart on the same RTCPeerConnection, and one
// the server gave up is renegotiated on a new one (the microphone track and the
// `<audio>` elements of `attachAudio` carry over). A full cluster node's `redirect` is
// followed, and a draining node's `draining {url}` too.
// The app sees `reconnecting`, `reconnected` and, when it is over for good,
// `disconnected {reason}` events (then `close`).

export const VERSION = "0.1.0";

/** The signaling protocol version this SDK speaks (docs/protocol.md, Versioning). */
export const PROTOCOL_VERSION = 1;

const DEFAULT_TIMEOUT = 10_000; // ms, like the Python client's 10 s
const HEARTBEAT = 2_000; // ms between pings; one unanswered for two of them: the link is dead
const BACKOFF = [250, 1_000]; // ms: first and longest wait between reconnection attempts
const ATTEMPT_TIMEOUT = 3_000; // ms for one attempt to open the WebSocket and resume
const MAX_REDIRECTS = 4; // cluster nodes a join may be sent through before giving up
const ICE_RESTART_AFTER = 2_000; // ms ICE may stay "disconnected" before it is restarted
// Close code of a socket given up for dead: the server holds the seat (1000 and the
// browser's 1001 on leaving the page mean the participant left).
const RESUMING = 4000;
const STAGE_ROLES = new Set(["host", "moderator", "speaker"]);

/** A request the server refused: `code` is the protocol error code (docs/protocol.md). */
export class PodiumError extends Error {
  constructor(code, message, url = null) {
    super(message);
    this.name = "PodiumError";
    this.code = code;
    /** `redirect` only: the cluster node to join instead. */
    this.url = url;
  }
}

/** Whether a role is on stage (allowed to publish audio). */
export function isOnStage(role) {
  return STAGE_ROLES.has(role);
}

/** One receive slot: a fixed track whose speaker changes without renegotiation. */
export class Slot {
  constructor(index, receiver) {
    this.index = index;
    this.receiver = receiver;
    this.track = receiver.track;
    this.stream = new MediaStream([receiver.track]);
    /** The identity whose audio the slot carries now, or null. */
    this.participant = null;
    /** Every participant the slot has carried, in order (null = emptied). */
    this.history = [];
    this._lastRtpTimestamp = null;
  }

  /**
   * The level (0..1, linear) of the audio arriving right now, from the RFC 6464
   * audio-level header extension the server forwards (getSynchronizationSources);
   * 0 when no packet arrived in the last `maxAge` ms (silence, DTX or an empty slot).
   */
  level(maxAge = 500) {
    const sources = this.receiver.getSynchronizationSources?.() ?? [];
    let best = null;
    for (const source of sources) {
      if (best === null || source.timestamp > best.timestamp) best = source;
    }
    if (best === null) return 0;
    // The spec'd (and Chrome's) clock is performance.timeOrigin + performance.now().
    const age = performance.timeOrigin + performance.now() - best.timestamp;
    let fresh = age <= maxAge;
    if (Math.abs(age) > 86_400_000) {
      // Some other clock: fall back to "a new packet since the previous call".
      fresh = best.rtpTimestamp !== this._lastRtpTimestamp;
    }
    this._lastRtpTimestamp = best.rtpTimestamp;
    return fresh ? (best.audioLevel ?? 0) : 0;
  }
}

/** Opens the WebSocket; rejects on error or after `timeout` ms. */
function openSocket(url, timeout) {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url);
    const timer = setTimeout(() => {
      ws.close();
      reject(new Error(`could not connect to ${url} within ${timeout} ms`));
    }, timeout);
    ws.addEventListener("open", () => {
      clearTimeout(timer);
      resolve(ws);
    }, { once: true });
    ws.addEventListener("error", () => {
      clearTimeout(timer);
      reject(new Error(`could not connect to ${url}`));
    }, { once: true });
  });
}

/** Resolves once ICE gathering completed, or after `timeout` ms (whatever was gathered is sent). */
function gatheringDone(pc, timeout) {
  if (pc.iceGatheringState === "complete") return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => {
      if (pc.iceGatheringState !== "complete") return;
      clearTimeout(timer);
      pc.removeEventListener("icegatheringstatechange", done);
      resolve();
    };
    const timer = setTimeout(() => {
      pc.removeEventListener("icegatheringstatechange", done);
      resolve();
    }, timeout);
    pc.addEventListener("icegatheringstatechange", done);
  });
}

/**
 * Drops mDNS (`<uuid>.local`) host candidates from an SDP: the server cannot resolve
 * them (it learns Chrome's address from its connectivity checks instead, as a
 * peer-reflexive candidate), and trying to costs aiortc a 1 s stall.
 */
export function withoutMdnsCandidates(sdp) {
  return sdp
    .split("\r\n")
    .filter((line) => !/^a=candidate:\S+ \d+ \S+ \d+ \S+\.local /i.test(line))
    .join("\r\n");
}

export class PodiumClient {
  /** Use `PodiumClient.connect`. */
  constructor(ws, url = "", options = {}) {
    this.ws = ws;
    this.url = url;
    this.options = options;
    /** "connected", "reconnecting" or "disconnected". */
    this.state = "connected";
    /** The RTCPeerConnection (null for a signaling-only client). */
    this.pc = null;
    /** The join response: participant, room, stage, attendees, chat, slots, ice_servers. */
    this.joinInfo = {};
    /** The receive slots, in m-line order. */
    this.slots = [];
    /** Why the connection closed (a `disconnected` reason), or null while open. */
    this.closedReason = null;
    /** The published microphone track, if any. */
    this.microphone = null;
    /** Your role (kept up to date from `role_changed`). */
    this.role = null;
    /** Whether you are muted on stage (kept up to date from `muted`/`role_changed`). */
    this.muted = false;
    this._layout = [];
    this._ids = 0;
    this._pending = new Map();
    this._handlers = new Map();
    this._waiters = new Set();
    this._ownsMicrophone = false;
    // Events that arrive while `connect` runs (between the join and the answer) are held
    // here and delivered, in order, just after `connect` resolves: handlers registered
    // right after `await PodiumClient.connect(...)` see every event, as in the Python client.
    this._backlog = [];
    this.closed = new Promise((resolve) => (this._resolveClosed = resolve));
    this._closing = false;
    this._recovering = null; // "ice", "media" or "socket" while a recovery runs
    this._iceTimer = null;
    /** ICE restarts this client made (diagnostics). */
    this.iceRestarts = 0;
    this._audioElements = [];
    this._attach(ws);
    const heartbeat = options.heartbeat ?? HEARTBEAT;
    this._heartbeat = heartbeat > 0 ? setInterval(() => this._beat(heartbeat), heartbeat) : null;
  }

  _attach(ws) {
    this.ws = ws;
    this._lastHeard = performance.now();
    this._pingSent = null;
    ws.addEventListener("message", (message) => {
      if (ws !== this.ws) return;
      this._lastHeard = performance.now();
      this._dispatch(message.data);
    });
    ws.addEventListener("close", () => {
      if (ws === this.ws) this._linkLost();
    });
  }

  /**
   * Ping; a ping unanswered (nothing at all heard since) for two periods means the socket
   * is dead even if TCP does not know. Measured from the ping, not from the last message:
   * a background tab's throttled timers must not read a quiet room as a dead link.
   */
  _beat(period) {
    if (this.state !== "connected" || this.ws.readyState !== WebSocket.OPEN) return;
    const now = performance.now();
    const outstanding = this._pingSent !== null && this._lastHeard < this._pingSent;
    if (outstanding && now - this._pingSent > 2 * period) {
      const dead = this.ws;
      this._linkLost();
      dead.close(RESUMING);
    } else if (!outstanding) {
      this._pingSent = now;
      this.request("ping", {}, { timeout: 2 * period }).catch(() => {});
    }
  }

  // -- connecting ------------------------------------------------------------

  /**
   * Join with `token` and (unless `media: false`) negotiate media.
   *
   * options:
   * - `publish`: a MediaStreamTrack or MediaStream to send, or `true` to open the
   *   microphone now (getUserMedia); default none (publish later with `publish()`).
   * - `audio`: getUserMedia audio constraints used by `publish: true` / `publishMicrophone()`.
   * - `room`: if set, must equal the token's room.
   * - `media`: false for a signaling-only client.
   * - `timeout`: ms for each request (default 10000).
   * - `gatherTimeout`: ms to wait for ICE gathering before offering (default 3000).
   * - `rtcConfiguration`: merged into the RTCPeerConnection configuration.
   */
  static async connect(url, token, options = {}) {
    const timeout = options.timeout ?? DEFAULT_TIMEOUT;
    const join = { token };
    if (options.room != null) join.room = options.room;
    let client = null;
    for (let hops = 0; client === null; hops++) {
      const ws = await openSocket(url, timeout);
      const attempt = new PodiumClient(ws, url, options);
      try {
        attempt.joinInfo = await attempt.request("join", join, { timeout });
        client = attempt;
      } catch (error) {
        attempt.close();
        // A full cluster node names one that is not: follow it, unnoticed by the app.
        if (!(error instanceof PodiumError && error.code === "redirect" && error.url)) throw error;
        if (hops + 1 >= MAX_REDIRECTS) throw new Error(`redirected ${MAX_REDIRECTS} times`);
        url = error.url;
      }
    }
    try {
      if (client.joinInfo.protocol !== PROTOCOL_VERSION) {
        const speaks = `the server speaks protocol ${client.joinInfo.protocol}`;
        throw new Error(`${speaks}, this client ${PROTOCOL_VERSION}`);
      }
      client.role = client.joinInfo.participant?.role ?? "listener";
      const me = client.identity;
      const seat = (client.joinInfo.stage?.speakers ?? []).find((s) => s.identity === me);
      client.muted = Boolean(seat?.muted);
      if (options.media !== false) await client._negotiate(options, timeout);
    } catch (error) {
      client.close();
      throw error;
    }
    setTimeout(() => client._flushBacklog(), 0); // after the caller's continuation
    return client;
  }

  /** Your identity. */
  get identity() {
    return this.joinInfo.participant?.identity ?? null;
  }

  async _negotiate(options, timeout) {
    const iceServers = (this.joinInfo.ice_servers ?? []).map((s) => ({ ...s }));
    const pc = (this.pc = new RTCPeerConnection({
      iceServers,
      bundlePolicy: "max-bundle",
      rtcpMuxPolicy: "require",
      ...(options.rtcConfiguration ?? {}),
    }));
    let track = null;
    if (options.publish === true) {
      track = await this._openMicrophone(options.audio);
    } else if (options.publish instanceof MediaStream) {
      track = options.publish.getAudioTracks()[0] ?? null;
    } else if (options.publish) {
      track = options.publish;
    }
    // The uplink m-line is always offered, so a later promotion needs no SDP.
    pc.addTransceiver(track ?? "audio", { direction: "sendonly" });
    if (track) {
      this._ownsMicrophone = options.publish === true;
      this._setMicrophone(track);
    }
    const count = Number(this.joinInfo.slots ?? 0);
    const receivers = [];
    for (let i = 0; i < count; i++) {
      receivers.push(pc.addTransceiver("audio", { direction: "recvonly" }).receiver);
    }
    await pc.setLocalDescription(await pc.createOffer());
    await gatheringDone(pc, options.gatherTimeout ?? 3000);
    const offer = withoutMdnsCandidates(pc.localDescription.sdp);
    const answer = await this.request("offer", { sdp: offer }, { timeout });
    await pc.setRemoteDescription({ type: "answer", sdp: answer.sdp });
    const previous = this.slots;
    this.slots = receivers.map((receiver, index) => new Slot(index, receiver));
    previous.forEach((slot, i) => {
      if (this.slots[i]) this.slots[i].history = slot.history; // the same slot, a new track
    });
    this._audioElements.forEach((element, i) => {
      if (this.slots[i]) element.srcObject = this.slots[i].stream;
    });
    this._applyLayout();
    pc.addEventListener("iceconnectionstatechange", () => this._watchIce(pc));
    pc.addEventListener("connectionstatechange", () => {
      if (pc === this.pc && pc.connectionState === "failed") this._recover("ice");
    });
  }

  /** ICE "disconnected" for ICE_RESTART_AFTER: restart it on this very peer connection. */
  _watchIce(pc) {
    if (pc !== this.pc) return;
    clearTimeout(this._iceTimer);
    if (pc.iceConnectionState !== "disconnected") return;
    this._iceTimer = setTimeout(() => {
      if (pc === this.pc && pc.iceConnectionState === "disconnected") this._recover("ice");
    }, ICE_RESTART_AFTER);
  }

  /**
   * An ICE restart: new credentials offered on the same peer connection; DTLS, SRTP and the
   * slots' tracks stay. When the server cannot restart it (its side is gone), a new peer
   * connection; when the socket is down, the socket's recovery takes over.
   */
  async _restartIce() {
    const pc = this.pc;
    try {
      pc.restartIce();
      await pc.setLocalDescription(await pc.createOffer({ iceRestart: true }));
      await gatheringDone(pc, this.options.gatherTimeout ?? 3000);
      const offer = withoutMdnsCandidates(pc.localDescription.sdp);
      const request = { sdp: offer, ice_restart: true };
      const answer = await this.request("offer", request, { timeout: ATTEMPT_TIMEOUT });
      if (pc !== this.pc) return;
      await pc.setRemoteDescription({ type: "answer", sdp: answer.sdp });
      this.iceRestarts += 1;
    } catch {
      if (pc !== this.pc || this.ws.readyState !== WebSocket.OPEN) return;
      try {
        await this._newPeerConnection();
      } catch {
        // the socket died meanwhile: its recovery negotiates afresh
      }
    }
  }

  /** Resolves when the peer connection is connected; rejects if it fails or on timeout. */
  waitConnected(timeout = DEFAULT_TIMEOUT) {
    const pc = this.pc;
    if (!pc) return Promise.reject(new Error("no media: connected with media: false"));
    return new Promise((resolve, reject) => {
      const check = () => {
        if (pc.connectionState === "connected") finish(resolve);
        else if (pc.connectionState === "failed" || pc.connectionState === "closed") {
          finish(() => reject(new Error(`peer connection ${pc.connectionState}`)));
        }
      };
      const finish = (then) => {
        clearTimeout(timer);
        pc.removeEventListener("connectionstatechange", check);
        then();
      };
      const timer = setTimeout(
        () => finish(() => reject(new Error(`not connected within ${timeout} ms`))),
        timeout,
      );
      pc.addEventListener("connectionstatechange", check);
      check();
    });
  }

  // -- publishing ------------------------------------------------------------

  /** Start sending `track` (a MediaStreamTrack or MediaStream) on the uplink (no renegotiation). */
  async publish(track) {
    if (track instanceof MediaStream) track = track.getAudioTracks()[0];
    if (!this.pc) throw new Error("no media: connected with media: false");
    const previous = this.microphone;
    await this.pc.getTransceivers()[0].sender.replaceTrack(track ?? null);
    if (previous && previous !== track && this._ownsMicrophone) previous.stop();
    this._ownsMicrophone = false;
    this._setMicrophone(track ?? null);
  }

  /**
   * Open the microphone (getUserMedia) and publish it. Its track is enabled only
   * while you are on stage and not muted: you enter the stage muted, and `unmute()`
   * opens it. `audio` are getUserMedia audio constraints.
   */
  async publishMicrophone(audio) {
    const track = await this._openMicrophone(audio);
    await this.publish(track);
    this._ownsMicrophone = true;
    return track;
  }

  async _openMicrophone(audio) {
    const stream = await navigator.mediaDevices.getUserMedia({ audio: audio ?? true, video: false });
    return stream.getAudioTracks()[0];
  }

  _setMicrophone(track) {
    this.microphone = track;
    this._syncMicrophone();
  }

  /** The microphone sends audio only while the server would forward it. */
  _syncMicrophone() {
    if (this.microphone) this.microphone.enabled = isOnStage(this.role) && !this.muted;
  }

  /** Stop sending (the uplink m-line stays, for a later `publish`). */
  async unpublish() {
    await this.publish(null);
  }

  // -- requests and events ---------------------------------------------------

  /** Send a request; resolve with its response data or reject with a PodiumError. */
  request(type, data = {}, { timeout = DEFAULT_TIMEOUT } = {}) {
    if (this.closedReason !== null || this.ws.readyState !== WebSocket.OPEN) {
      return Promise.reject(new Error(`closed (${this.closedReason ?? "not open"})`));
    }
    const id = ++this._ids;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this._pending.delete(id);
        reject(new Error(`no response to ${type} within ${timeout} ms`));
      }, timeout);
      this._pending.set(id, { resolve, reject, timer });
      this.ws.send(JSON.stringify({ id, type, data }));
    });
  }

  /**
   * Call `handler(data, name)` for every event called `name` ("*" for all; "error"
   * for errors the server could not tie to a request; "close" when the connection
   * ends). Returns a function that removes the handler.
   */
  on(name, handler) {
    if (!this._handlers.has(name)) this._handlers.set(name, new Set());
    this._handlers.get(name).add(handler);
    return () => this._handlers.get(name)?.delete(handler);
  }

  /** Like `on`, for one event. */
  once(name, handler) {
    const off = this.on(name, (data, event) => {
      off();
      handler(data, event);
    });
    return off;
  }

  /**
   * The next event called `name` (whose data satisfies `where`), arriving after this call.
   * Call it before the request that causes the event.
   */
  nextEvent(name, { timeout = DEFAULT_TIMEOUT, where = null } = {}) {
    return new Promise((resolve, reject) => {
      const waiter = { reject: (error) => finish(() => reject(error)) };
      const off = this.on(name, (data) => {
        if (!where || where(data)) finish(() => resolve({ name, data }));
      });
      const timer = setTimeout(
        () => finish(() => reject(new Error(`no ${name} event within ${timeout} ms`))),
        timeout,
      );
      const finish = (then) => {
        clearTimeout(timer);
        off();
        this._waiters.delete(waiter);
        then();
      };
      this._waiters.add(waiter);
    });
  }

  /**
   * Server events from this call on, `{name, data}`, as an async iterator that ends
   * when the connection closes: `for await (const {name, data} of client.events())`.
   */
  events() {
    const client = this;
    const queue = [];
    let wake = null;
    let done = false;
    const off = this.on("*", (data, name) => {
      queue.push({ name, data });
      wake?.();
    });
    this.closed.then(() => wake?.());
    const finish = () => {
      done = true;
      off();
      wake?.();
      return { done: true, value: undefined };
    };
    return {
      [Symbol.asyncIterator]() {
        return this;
      },
      async next() {
        while (queue.length === 0) {
          if (done || client.closedReason !== null) return finish();
          await new Promise((resolve) => (wake = resolve));
          wake = null;
        }
        return { done: false, value: queue.shift() };
      },
      async return() {
        return finish();
      },
    };
  }

  _emit(name, data) {
    for (const key of [name, "*"]) {
      for (const handler of [...(this._handlers.get(key) ?? [])]) {
        try {
          handler(data, name);
        } catch (error) {
          console.error(`podium: ${key} handler failed`, error);
        }
      }
    }
  }

  _dispatch(raw) {
    let message;
    try {
      message = JSON.parse(raw);
    } catch {
      return;
    }
    if (message.type === "response" || message.type === "error") {
      const pending = this._pending.get(message.id);
      if (!pending) {
        if (message.type === "error") this._emit("error", message.error);
        return;
      }
      this._pending.delete(message.id);
      clearTimeout(pending.timer);
      if (message.type === "response") pending.resolve(message.data ?? {});
      else {
        const { code, message: text, url = null } = message.error;
        pending.reject(new PodiumError(code, text, url));
      }
    } else if (message.type === "event") {
      const data = message.data ?? {};
      this._track(message.event, data);
      if (this._backlog) this._backlog.push([message.event, data]);
      else this._emit(message.event, data);
      if (message.event === "media_lost") this._recover("media");
      if (message.event === "draining" && data.url) this._move(data.url);
    }
  }

  /** Keep the client's own view (slots, role, mute) current before handlers run. */
  _track(name, data) {
    const me = this.identity;
    if (name === "slots") {
      this._layout = [...data.slots];
      this._applyLayout();
    } else if (name === "disconnected") {
      this.closedReason = data.reason ?? "disconnected";
    } else if (name === "role_changed" && data.participant === me) {
      const entering = !isOnStage(this.role) && isOnStage(data.new);
      this.role = data.new;
      if (entering) this.muted = true; // the stage never opens a microphone
      if (!isOnStage(data.new)) this.muted = false;
      this._syncMicrophone();
    } else if (name === "muted" && data.participant === me) {
      this.muted = Boolean(data.muted);
      this._syncMicrophone();
    }
  }

  _flushBacklog() {
    const backlog = this._backlog ?? [];
    this._backlog = null;
    for (const [name, data] of backlog) this._emit(name, data);
  }

  _applyLayout() {
    this.slots.forEach((slot, i) => {
      const participant = this._layout[i] ?? null;
      if (slot.participant !== participant) {
        slot.participant = participant;
        slot.history.push(participant);
      }
    });
  }

  // -- recovering from a dead link ----------------------------------------------

  /** The WebSocket closed: resume if it died under us, finish if it was ended. */
  _linkLost() {
    for (const [id, pending] of this._pending) {
      clearTimeout(pending.timer);
      pending.reject(new Error("connection lost"));
      this._pending.delete(id);
    }
    const resumable = this._heartbeat !== null && this.joinInfo.resume_token;
    if (this._closing || this.closedReason !== null || !resumable) this._closedSocket();
    else this._recover("socket");
  }

  /** Start reconnecting, restarting ICE or renegotiating media, unless a recovery runs. */
  _recover(kind) {
    if (this._closing || this.state === "disconnected") return;
    if (this._recovering === "socket" || (this._recovering !== null && kind !== "socket")) return;
    this._recovering = kind;
    const recoveries = {
      socket: () => this._reconnect(),
      ice: () => this._restartIce(),
      media: () => this._renegotiateMedia(),
    };
    const run = recoveries[kind]();
    run.finally(() => {
      if (this._recovering === kind) this._recovering = null;
    });
  }

  async _renegotiateMedia() {
    try {
      await this._newPeerConnection();
    } catch {
      // the socket died too: its loss starts a reconnection
    }
  }

  async _newPeerConnection() {
    const old = this.pc;
    const microphone = this.microphone;
    old?.close();
    const options = { ...this.options, publish: microphone ?? undefined };
    const owns = this._ownsMicrophone;
    await this._negotiate(options, ATTEMPT_TIMEOUT * 2);
    this._ownsMicrophone = owns;
  }

  /** The node is draining and names another: resume there now (the seat is kept). */
  _move(url) {
    this.url = url;
    if (this.state === "connected" && this.ws.readyState === WebSocket.OPEN) this.ws.close(RESUMING);
  }

  /**
   * Reopen the WebSocket with backoff and resume the seat within the server's window. In a
   * cluster the join response lists its nodes: when this one does not answer, the next is
   * tried (any node serves any room).
   */
  async _reconnect() {
    this.state = "reconnecting";
    this._emit("reconnecting", {});
    const deadline = performance.now() + 1000 * Number(this.joinInfo.resume_window ?? 0);
    let delay = BACKOFF[0];
    let reason = "resume_timeout";
    const others = (this.joinInfo.reconnect_urls ?? []).filter((u) => u !== this.url);
    const urls = [this.url, ...others];
    let attempt = 0;
    while (performance.now() < deadline && !this._closing) {
      const url = urls[attempt % urls.length];
      let resumed;
      try {
        this._attach(await openSocket(url, ATTEMPT_TIMEOUT));
        resumed = await this.request(
          "resume", { token: this.joinInfo.resume_token }, { timeout: ATTEMPT_TIMEOUT },
        );
      } catch (error) {
        if (error instanceof PodiumError) {
          reason = error.code; // the seat is gone
          break;
        }
        if (this.ws.readyState === WebSocket.OPEN) this.ws.close(RESUMING);
        attempt += 1;
        if (attempt % urls.length === 0) {
          // every node tried: wait before the next round (jittered: no herd)
          const jitter = 0.8 + 0.4 * Math.random();
          await new Promise((resolve) => setTimeout(resolve, delay * jitter));
          delay = Math.min(delay * 2, BACKOFF[1]);
        }
        continue;
      }
      this.url = url;
      Object.assign(this.joinInfo, resumed);
      this.state = "connected";
      const failed = ["failed", "closed"].includes(this.pc?.connectionState);
      if (this.pc && (resumed.media === false || failed)) {
        try {
          await this._newPeerConnection();
        } catch {
          // a later failure is reported again by the peer connection or the socket
        }
      } else if (this.pc?.iceConnectionState === "disconnected") {
        await this._restartIce(); // the same seat, the same peer connection: a new ICE path
      }
      this._emit("reconnected", {});
      return;
    }
    if (this._closing) return;
    if (this.closedReason === null) {
      // else the server said why (removed, banned, room_ended) before refusing the resume
      this.closedReason = reason;
      this._emit("disconnected", { reason });
    }
    if (this.ws.readyState === WebSocket.OPEN) this.ws.close(RESUMING);
    this._closedSocket();
  }

  _closedSocket() {
    if (this.state === "disconnected") return;
    this.state = "disconnected";
    clearInterval(this._heartbeat);
    this.closedReason = this.closedReason ?? "connection closed";
    for (const [id, pending] of this._pending) {
      clearTimeout(pending.timer);
      pending.reject(new Error(`closed (${this.closedReason})`));
      this._pending.delete(id);
    }
    for (const waiter of [...this._waiters]) {
      waiter.reject(new Error(`closed (${this.closedReason})`));
    }
    this.pc?.close();
    this._releaseMicrophone();
    this._flushBacklog();
    this._resolveClosed(this.closedReason);
    this._emit("close", { reason: this.closedReason });
  }

  // -- audio -------------------------------------------------------------------

  /** The slot carrying `identity` now, or undefined. */
  slotOf(identity) {
    return this.slots.find((slot) => slot.participant === identity);
  }

  /**
   * Play every slot through an `<audio>` element appended to `parent` (hidden).
   * Browsers route a remote WebRTC track to WebAudio only while an element plays
   * it, so attach before analysing a slot's `stream`. Returns the elements.
   */
  attachAudio(parent = document.body) {
    const elements = this.slots.map((slot) => {
      const element = document.createElement("audio");
      element.autoplay = true;
      element.hidden = true;
      element.dataset.slot = String(slot.index);
      element.srcObject = slot.stream;
      parent.appendChild(element);
      element.play().catch(() => {}); // autoplay may wait for a user gesture
      return element;
    });
    this._audioElements.push(...elements);
    return elements;
  }

  /**
   * Audio levels (0..1) of who is heard now, by identity: each occupied slot's
   * level (see `Slot.level`), and yours from the microphone's media-source stats.
   */
  async levels() {
    const result = new Map();
    for (const slot of this.slots) {
      if (slot.participant) result.set(slot.participant, slot.level());
    }
    if (this.pc && this.microphone && this.microphone.enabled && this.identity) {
      const stats = await this.pc.getTransceivers()[0].sender.getStats();
      for (const report of stats.values()) {
        if (report.type === "media-source" && report.kind === "audio") {
          result.set(this.identity, report.audioLevel ?? 0);
        }
      }
    }
    return result;
  }

  // -- the stage (docs/protocol.md; signaling/session.py HANDLERS) ------------

  raiseHand() { return this.request("raise_hand"); }
  /** Lower your hand, or (moderators) someone else's. */
  lowerHand(participant) { return this.request("lower_hand", target(participant)); }
  inviteToStage(participant) { return this.request("invite_to_stage", { participant }); }
  cancelInvite(participant) { return this.request("cancel_invite", { participant }); }
  /** Accept an invitation: you enter the stage muted; `unmute()` opens the microphone. */
  acceptInvite() { return this.request("accept_invite"); }
  declineInvite() { return this.request("decline_invite"); }
  /** Leave the stage yourself, or (moderators) move someone else to the audience. */
  moveToAudience(participant) { return this.request("move_to_audience", target(participant)); }
  promote(participant) { return this.request("promote", { participant }); }
  demote(participant) { return this.request("demote", { participant }); }

  /** Mute yourself (the microphone closes at once), or (moderators) someone else. */
  async mute(participant) {
    const self = participant == null || participant === this.identity;
    if (self && this.microphone) this.microphone.enabled = false;
    try {
      return await this.request("mute", target(participant));
    } finally {
      if (self) this._syncMicrophone();
    }
  }

  /** Unmute yourself (nobody can unmute someone else). */
  async unmute() {
    const result = await this.request("unmute");
    this.muted = false;
    this._syncMicrophone();
    return result;
  }

  /** Remove someone (moderators); `ban` refuses them for the room's lifetime. */
  remove(participant, { ban = false, reason = "" } = {}) {
    return this.request("remove", { participant, ban, reason });
  }
  endRoom() { return this.request("end_room"); }
  getStage() { return this.request("get_stage"); }
  /** A page of attendees: `{items, next_cursor, total, version}`. */
  getAttendees({ cursor, limit, role } = {}) {
    return this.request("get_attendees", clean({ cursor, limit, role }));
  }
  getAttendance() { return this.request("get_attendance"); }

  // -- chat --------------------------------------------------------------------

  sendChat(text) { return this.request("send_chat", { text }); }
  /** React to the room, or to one message. */
  react(emoji, messageId) { return this.request("react", clean({ emoji, message_id: messageId })); }
  /** Pin a message (moderators); `null` clears the pin. */
  pinMessage(messageId) { return this.request("pin_message", clean({ message_id: messageId })); }

  ping() { return this.request("ping"); }

  // -- closing -----------------------------------------------------------------

  /** Tell the server you leave (everything you held is released), then close. */
  async leave() {
    try {
      await this.request("leave", {}, { timeout: 5000 });
    } catch {
      // closing anyway
    }
    this.close();
  }

  close() {
    this._closing = true;
    clearTimeout(this._iceTimer);
    this.pc?.close();
    this._releaseMicrophone();
    if (this.ws.readyState === WebSocket.OPEN || this.ws.readyState === WebSocket.CONNECTING) {
      this.ws.close();
    } else {
      this._closedSocket();
    }
  }

  _releaseMicrophone() {
    if (this.microphone && this._ownsMicrophone) this.microphone.stop();
  }
}

function target(participant) {
  return participant == null ? {} : { participant };
}

function clean(data) {
  return Object.fromEntries(Object.entries(data).filter(([, v]) => v !== undefined && v !== null));
}
