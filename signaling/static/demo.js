// The Podium demo room page (served by `podium serve --dev`): a thin UI over podium.js.
//
// URL parameters prefill the join form: ?room=&identity=&role=&token=&ws=
// plus autojoin=1 (join at once), processing=0 (turn the browser's echo
// cancellation, noise suppression and gain control off, for test tones) and relay=1
// (media only through the server's TURN servers: to check a TURN set-up).

import { PodiumClient, PodiumError, isOnStage } from "./podium.js";

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);
const SPEAKING_LEVEL = 0.02; // linear (about -34 dBov)
const SPEAKING_HOLD_MS = 400;
const ROLE_LABEL = { host: "Host", moderator: "Moderator", speaker: "Speaker", listener: "Listener" };
const MODERATORS = new Set(["host", "moderator"]);

let client = null;
let levelTimer = null;
let stageRefresh = null;
const state = freshState();

function freshState() {
  return {
    me: null,
    role: "listener",
    muted: false,
    hand: false,
    micError: null, // why the microphone could not be opened (shown until it opens)
    invitedBy: null,
    room: null,
    counts: {},
    total: 0,
    attendeeVersion: 0,
    people: new Map(), // identity -> person (name, role, headline, ...)
    audience: new Map(), // listeners, join order
    speakers: [],
    hands: [],
    invited: new Set(),
    pinned: null,
    speaking: new Map(), // identity -> {level, speaking, until}
    serverSpeaking: false, // a `speaking` event arrived: the server drives the indicators
    dominant: null,
  };
}

function audioConstraints() {
  if (params.get("processing") === "0") {
    return { echoCancellation: false, noiseSuppression: false, autoGainControl: false };
  }
  return { echoCancellation: true, noiseSuppression: true, autoGainControl: true };
}

// -- joining --------------------------------------------------------------------

function init() {
  const form = $("join-form");
  for (const name of ["room", "identity", "token"]) {
    if (params.get(name)) form.elements[name].value = params.get(name);
  }
  if (params.get("token")) form.querySelector("details").open = true;
  const role = params.get("role");
  if (role) {
    const radio = form.querySelector(`input[name=role][value="${CSS.escape(role)}"]`);
    if (radio) radio.checked = true;
  }
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    join(Object.fromEntries(new FormData(form)));
  });
  $("leave").addEventListener("click", () => leave("You left the room."));
  $("hand").addEventListener("click", () => act(state.hand ? () => client.lowerHand() : () => client.raiseHand()));
  $("mic").addEventListener("click", toggleMic);
  $("leave-stage").addEventListener("click", () => act(() => client.moveToAudience()));
  $("end-room").addEventListener("click", () => {
    if (confirm("End the room for everyone?")) act(() => client.endRoom());
  });
  $("accept-invite").addEventListener("click", acceptInvite);
  $("decline-invite").addEventListener("click", () => act(async () => {
    await client.declineInvite();
    state.invitedBy = null;
    render();
  }));
  $("chat-form").addEventListener("submit", sendChat);
  for (const button of document.querySelectorAll(".reaction")) {
    button.addEventListener("click", () => act(() => client.react(button.dataset.emoji)));
  }
  window.podiumDemo = { state, get client() { return client; } };
  if (params.get("autojoin") === "1") form.requestSubmit();
}

async function join(fields) {
  const identity = (fields.identity ?? "").trim();
  const token = (fields.token ?? "").trim();
  if (!token && !identity) {
    showJoinMessage("Enter your name to join.");
    $("join-identity").focus();
    return;
  }
  const button = $("join-button");
  button.disabled = true;
  button.textContent = "Joining…";
  showJoinMessage("");
  try {
    let jwt = token;
    if (!jwt) {
      const query = new URLSearchParams({ room: fields.room || "demo", identity, role: fields.role || "listener" });
      const response = await fetch(`/dev/token?${query}`);
      if (!response.ok) throw new Error(`could not get a token (${response.status}): ${await response.text()}`);
      jwt = (await response.json()).token;
    }
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    const url = params.get("ws") || `${scheme}://${location.host}/rtc`;
    const rtcConfiguration = params.get("relay") === "1" ? { iceTransportPolicy: "relay" } : {};
    client = await PodiumClient.connect(url, jwt, { rtcConfiguration });
    enterRoom();
    if (isOnStage(client.role)) await openMicrophone();
  } catch (error) {
    client?.close();
    client = null;
    showJoinMessage(`Could not join: ${error.message}`);
  } finally {
    button.disabled = false;
    button.textContent = "Join room";
  }
}

function enterRoom() {
  Object.assign(state, freshState());
  const info = client.joinInfo;
  state.me = client.identity;
  state.role = client.role;
  state.muted = client.muted;
  state.room = info.room;
  state.counts = { ...(info.room?.counts ?? {}) };
  state.total = info.attendees?.total ?? info.room?.num_participants ?? 0;
  state.attendeeVersion = info.attendees?.version ?? 0;
  remember(info.participant);
  for (const person of info.attendees?.items ?? []) addAttendee(person);
  applyStage(info.stage ?? {});
  state.pinned = info.chat?.pinned ?? null;
  $("messages").replaceChildren();
  for (const message of info.chat?.history ?? []) addMessage(message);

  client.attachAudio($("audio-sink"));
  client.on("*", onEvent);
  client.on("close", ({ reason }) => leave(describeReason(reason), { fromServer: true }));
  client.on("reconnecting", renderConnection);
  client.on("reconnected", () => {
    // The seat is back; what changed meanwhile arrives in the resume response.
    applyStage(client.joinInfo.stage ?? {});
    client.pc?.addEventListener("connectionstatechange", renderConnection);
    render();
    renderConnection();
  });
  client.on("media_lost", renderConnection);
  client.pc?.addEventListener("connectionstatechange", renderConnection);

  $("join-view").hidden = true;
  $("room-view").hidden = false;
  $("room-header").hidden = false;
  $("controls").hidden = false;
  $("leave").hidden = false;
  $("room-name").textContent = state.room?.name ?? "";
  document.title = `${state.room?.name ?? "Room"} · Podium`;
  render();
  levelTimer = setInterval(updateLevels, 150);
  $("main").focus();
}

async function leave(message, { fromServer = false } = {}) {
  if (!client) return;
  const leaving = client;
  client = null;
  clearInterval(levelTimer);
  if (!fromServer) await leaving.leave();
  else leaving.close();
  $("audio-sink").replaceChildren();
  $("room-view").hidden = true;
  $("room-header").hidden = true;
  $("controls").hidden = true;
  $("leave").hidden = true;
  $("connection").hidden = true;
  $("join-view").hidden = false;
  document.title = "Podium · demo room";
  showJoinMessage(message);
}

function describeReason(reason) {
  return {
    left: "You left the room.",
    room_ended: "The host ended the room.",
    removed: "A moderator removed you from the room.",
    banned: "You were removed from this room and cannot rejoin.",
    duplicate_identity: "You joined from somewhere else, so this page was disconnected.",
    media_failed: "The audio connection failed. Try joining again.",
    resume_failed: "The connection was lost for too long. Join again.",
    resume_timeout: "Could not reach the server again. Join again.",
    server_shutdown: "The server shut down.",
  }[reason] ?? `Disconnected (${reason}).`;
}

// -- server events ------------------------------------------------------------------

function onEvent(data, name) {
  switch (name) {
    case "attendees":
      applyAttendeeDelta(data);
      break;
    case "role_changed":
      if (data.participant === state.me) {
        state.role = data.new;
        state.muted = client.muted;
        state.hand = false;
        state.invitedBy = null;
      }
      state.invited.delete(data.participant);
      updatePerson(data.participant, { role: data.new });
      scheduleStageRefresh();
      break;
    case "muted":
      if (data.participant === state.me) state.muted = Boolean(data.muted);
      for (const speaker of state.speakers) {
        if (speaker.identity === data.participant) speaker.muted = Boolean(data.muted);
      }
      if (data.participant === state.me && data.muted && data.by !== state.me) {
        toast(`${nameOf(data.by)} muted you.`);
      }
      break;
    case "hand_raised":
      if (data.participant === state.me) state.hand = true;
      if (!state.hands.includes(data.participant)) state.hands.push(data.participant);
      break;
    case "hand_lowered":
      if (data.participant === state.me) {
        state.hand = false;
        if (data.by !== state.me) toast(`${nameOf(data.by)} lowered your hand.`);
      }
      state.hands = state.hands.filter((id) => id !== data.participant);
      break;
    case "invited":
      if (data.participant === state.me) state.invitedBy = data.by;
      state.invited.add(data.participant);
      break;
    case "invite_cancelled":
    case "invite_declined":
      if (data.participant === state.me) state.invitedBy = null;
      state.invited.delete(data.participant);
      break;
    case "participant_removed":
      state.hands = state.hands.filter((id) => id !== data.participant);
      scheduleStageRefresh();
      break;
    case "chat":
      addMessage(data);
      break;
    case "pinned":
      state.pinned = data.message;
      break;
    case "reaction":
      showReaction(data);
      break;
    case "speaking":
      applySpeaking(data);
      return; // indicators only
    case "dominant_speaker":
      state.dominant = data.participant;
      paintIndicators();
      return;
    case "room_ended":
      toast("The host ended the room.");
      break;
    default:
      break;
  }
  render();
}

function applyStage(stage) {
  state.speakers = stage.speakers ?? [];
  for (const speaker of state.speakers) remember(speaker);
  if (stage.hand_queue) state.hands = [...stage.hand_queue];
  const me = state.speakers.find((s) => s.identity === state.me);
  if (me) state.muted = Boolean(me.muted);
}

/** Stage events can come in bursts (accept → role_changed, attendees): refresh once. */
function scheduleStageRefresh() {
  if (stageRefresh) return;
  stageRefresh = setTimeout(async () => {
    stageRefresh = null;
    if (!client) return;
    try {
      applyStage(await client.getStage());
      render();
    } catch (error) {
      console.warn("get_stage failed", error);
    }
  }, 50);
}

function applyAttendeeDelta(delta) {
  if (delta.version <= state.attendeeVersion) return;
  state.attendeeVersion = delta.version;
  let stageChanged = false;
  for (const person of [...(delta.joined ?? []), ...(delta.updated ?? [])]) {
    addAttendee(person);
    stageChanged ||= isOnStage(person.role);
  }
  for (const identity of delta.left ?? []) {
    stageChanged ||= state.speakers.some((s) => s.identity === identity);
    state.audience.delete(identity);
    state.hands = state.hands.filter((id) => id !== identity);
    state.invited.delete(identity);
  }
  state.counts = { ...state.counts, ...(delta.counts ?? {}) };
  state.total = delta.total ?? state.total;
  if (stageChanged) scheduleStageRefresh();
}

function addAttendee(person) {
  remember(person);
  if (person.role === "listener") state.audience.set(person.identity, person);
  else state.audience.delete(person.identity);
}

function remember(person) {
  if (person?.identity) state.people.set(person.identity, { ...state.people.get(person.identity), ...person });
}

function updatePerson(identity, change) {
  const person = state.people.get(identity);
  if (person) addAttendee({ ...person, ...change });
}

function nameOf(identity) {
  return state.people.get(identity)?.name || identity;
}

// -- actions --------------------------------------------------------------------------

async function act(action) {
  if (!client) return;
  try {
    await action();
  } catch (error) {
    toast(error instanceof PodiumError ? error.message : `Something went wrong: ${error.message}`, true);
  }
  render();
}

async function openMicrophone() {
  if (!window.isSecureContext || !navigator.mediaDevices?.getUserMedia) {
    state.micError = `Your microphone is off: browsers give it only to secure pages, and ${location.origin} is not one. `
      + "Open this page over https (podium serve --dev --host 0.0.0.0 serves it so) or on localhost.";
    render();
    return false;
  }
  try {
    await client.publishMicrophone(audioConstraints());
    state.micError = null;
    render();
    return true;
  } catch (error) {
    state.micError = `Your microphone is off: ${error.message}`;
    render();
    return false;
  }
}

async function acceptInvite() {
  const button = $("accept-invite");
  button.disabled = true;
  try {
    // Ask for the microphone first: nobody should land on stage unable to speak.
    if (!client.microphone && !(await openMicrophone())) return;
    await act(async () => {
      await client.acceptInvite();
      state.invitedBy = null;
    });
  } finally {
    button.disabled = false;
  }
}

async function toggleMic() {
  if (!client.microphone && !(await openMicrophone())) return;
  await act(async () => {
    if (state.muted) await client.unmute();
    else await client.mute();
    state.muted = client.muted;
  });
}

async function sendChat(event) {
  event.preventDefault();
  const input = $("chat-input");
  const text = input.value.trim();
  if (!text || !client) return;
  await act(async () => {
    await client.sendChat(text);
    input.value = "";
  });
}

// -- speaking indicators -----------------------------------------------------------
//
// The server's `speaking` events carry only changes ({participant, level 0-1, speaking}),
// so once one has arrived the page keeps that state until the next change. Before that
// (an older server, or nobody has spoken yet) the page reads each slot's RTP audio level
// (getSynchronizationSources) and its own microphone's level instead.

function applySpeaking(data) {
  state.serverSpeaking = true;
  for (const entry of data.speakers ?? []) {
    const level = toLinear(entry.level);
    state.speaking.set(entry.participant, { level, speaking: entry.speaking ?? level > 0, until: 0 });
  }
  paintIndicators();
}

/** Levels are display levels (0..1); tolerate RFC 6464 -dBov (0 loud … 127 silent) too. */
function toLinear(level) {
  if (typeof level !== "number" || Number.isNaN(level)) return 0;
  return level > 1 ? Math.min(1, 3 * 10 ** (-level / 20)) : Math.max(0, level);
}

async function updateLevels() {
  if (!client || state.serverSpeaking) return;
  const levels = await client.levels();
  if (state.serverSpeaking) return; // an event arrived meanwhile
  const now = performance.now();
  for (const [identity, level] of levels) {
    const entry = state.speaking.get(identity) ?? { level: 0, speaking: false, until: 0 };
    if (level >= SPEAKING_LEVEL) entry.until = now + SPEAKING_HOLD_MS;
    entry.level = Math.min(1, level * 3); // -10 dBov and up fill the ring
    entry.speaking = entry.until > now;
    state.speaking.set(identity, entry);
  }
  for (const [identity, entry] of state.speaking) {
    if (!levels.has(identity)) Object.assign(entry, { level: 0, speaking: entry.until > now });
  }
  paintIndicators();
}

function paintIndicators() {
  for (const card of document.querySelectorAll("#speakers [data-identity]")) {
    const identity = card.dataset.identity;
    const entry = state.speaking.get(identity);
    const speaking = Boolean(entry?.speaking) && card.dataset.muted !== "true";
    card.classList.toggle("speaking", speaking);
    card.classList.toggle("dominant", speaking && state.dominant === identity);
    card.style.setProperty("--level", speaking ? Math.max(0.2, entry.level).toFixed(2) : "0");
    const status = card.querySelector(".speaking-status");
    const text = speaking ? "speaking" : "";
    if (status.textContent !== text) status.textContent = text;
  }
}

// -- rendering ---------------------------------------------------------------------

function render() {
  if (!client) return;
  renderHeader();
  renderStage();
  renderHands();
  renderAudience();
  renderInvite();
  renderControls();
  renderPinned();
  renderConnection();
}

function renderHeader() {
  const listening = state.counts.listener ?? 0;
  $("audience-count").textContent = `${listening} listening · ${state.total} in the room`;
  $("audience-total").textContent = `(${listening})`;
}

function renderConnection() {
  const element = $("connection");
  // The SDK's own state first: it reconnects by itself, and says so.
  const linkState = client?.state === "reconnecting" ? "reconnecting" : null;
  const pcState = linkState ?? client?.pc?.connectionState ?? "new";
  const label = {
    new: "Connecting…", connecting: "Connecting…", connected: "Audio connected",
    reconnecting: "Reconnecting…", disconnected: "Audio interrupted",
    failed: "Audio failed, renegotiating…", closed: "Audio closed",
  }[pcState] ?? pcState;
  element.hidden = !client;
  const sending = !isOnStage(state.role) || Boolean(client?.microphone);
  element.textContent = pcState === "connected" && !sending ? "Audio connected · your microphone is off" : label;
  element.dataset.state = pcState;
}

function renderStage() {
  const list = $("speakers");
  const moderator = MODERATORS.has(state.role);
  const cards = state.speakers.map((speaker) => {
    const me = speaker.identity === state.me;
    const item = el("li", { class: "speaker", "data-identity": speaker.identity, "data-muted": String(Boolean(speaker.muted)) });
    const avatar = avatarFor(speaker, "avatar-lg");
    if (speaker.muted) avatar.append(el("span", { class: "muted-badge", title: "Muted" }, icon("mic-off")));
    item.append(avatar);
    const name = el("p", { class: "speaker-name" }, speaker.name || speaker.identity);
    if (me) name.append(el("span", { class: "you" }, " (you)"));
    item.append(name);
    const detail = [ROLE_LABEL[speaker.role] ?? speaker.role];
    if (speaker.muted) detail.push("muted");
    item.append(el("p", { class: "speaker-role" }, detail.join(" · ")));
    item.append(el("span", { class: "visually-hidden speaking-status", "aria-live": "off" }));
    const sparesTarget = state.role === "moderator" && speaker.role === "host";
    if (moderator && !me && !sparesTarget) {
      const who = speaker.name || speaker.identity;
      const actions = el("div", { class: "card-actions" });
      if (!speaker.muted) {
        actions.append(button("Mute", `Mute ${who}`, () => client.mute(speaker.identity)));
      }
      actions.append(button("To audience", `Move ${who} to the audience`, () => client.moveToAudience(speaker.identity)));
      actions.append(button("Remove", `Remove ${who} from the room`, () => {
        if (confirm(`Remove ${who} from the room?`)) return client.remove(speaker.identity);
        return null;
      }, "danger"));
      item.append(actions);
    }
    return item;
  });
  list.replaceChildren(...cards);
  $("speaker-count").textContent = `(${state.speakers.length})`;
  $("stage-empty").hidden = state.speakers.length > 0;
  paintIndicators();
}

function renderHands() {
  const moderator = MODERATORS.has(state.role);
  $("hands-section").hidden = !moderator;
  if (!moderator) return;
  const items = state.hands.map((identity) => {
    const person = state.people.get(identity) ?? { identity, name: identity };
    const who = person.name || identity;
    const item = el("li", { class: "person", "data-identity": identity });
    item.append(avatarFor(person, "avatar-sm"), personText(person));
    const actions = el("div", { class: "row-actions" });
    if (state.invited.has(identity)) {
      actions.append(el("span", { class: "pill" }, "Invited"));
      actions.append(button("Cancel", `Cancel the invitation to ${who}`, () => client.cancelInvite(identity)));
    } else {
      actions.append(button("Invite to speak", `Invite ${who} to speak`, () => client.inviteToStage(identity), "primary"));
      actions.append(button("Lower", `Lower ${who}'s hand`, () => client.lowerHand(identity)));
    }
    item.append(actions);
    return item;
  });
  $("hands").replaceChildren(...items);
  $("hand-count").textContent = `(${state.hands.length})`;
  $("hands-empty").hidden = state.hands.length > 0;
}

function renderAudience() {
  const moderator = MODERATORS.has(state.role);
  const shown = [...state.audience.values()].slice(0, 50);
  const items = shown.map((person) => {
    const who = person.name || person.identity;
    const item = el("li", { class: "person", "data-identity": person.identity });
    item.append(avatarFor(person, "avatar-sm"), personText(person, person.identity === state.me));
    const badges = el("div", { class: "row-actions" });
    if (state.hands.includes(person.identity) || (person.identity === state.me && state.hand)) {
      badges.append(el("span", { class: "pill hand-pill", title: "Hand raised" }, "✋", el("span", { class: "visually-hidden" }, " hand raised")));
    }
    if (moderator && person.identity !== state.me && !state.invited.has(person.identity)) {
      badges.append(button("Invite", `Invite ${who} to speak`, () => client.inviteToStage(person.identity)));
    }
    item.append(badges);
    return item;
  });
  $("audience").replaceChildren(...items);
  const more = (state.counts.listener ?? 0) - shown.length;
  $("audience-more").hidden = more <= 0;
  $("audience-more").textContent = `and ${more} more`;
}

function renderInvite() {
  const banner = $("invite-banner");
  const show = Boolean(state.invitedBy) && !isOnStage(state.role);
  if (show && banner.hidden) {
    $("invite-text").textContent = `${nameOf(state.invitedBy)} invited you to speak`;
    banner.hidden = false;
    $("accept-invite").focus();
  } else if (!show) {
    banner.hidden = true;
  }
}

function renderControls() {
  const onStage = isOnStage(state.role);
  const hand = $("hand");
  hand.hidden = onStage;
  hand.setAttribute("aria-pressed", String(state.hand));
  hand.replaceChildren(icon("hand"), document.createTextNode(state.hand ? "Lower hand" : "Raise hand"));
  const mic = $("mic");
  mic.hidden = !onStage;
  // Without an open microphone nothing is sent, whatever the mute state says.
  const silent = state.muted || !client?.microphone;
  const label = !client?.microphone ? "Turn on microphone" : state.muted ? "Unmute" : "Mute";
  mic.classList.toggle("muted", silent);
  mic.replaceChildren(icon(silent ? "mic-off" : "mic"), document.createTextNode(label));
  const micError = $("mic-error");
  micError.hidden = !onStage || !state.micError;
  micError.textContent = state.micError ?? "";
  $("leave-stage").hidden = !onStage || state.role === "host";
  $("end-room").hidden = state.role !== "host";
}

function renderPinned() {
  const box = $("pinned");
  box.hidden = !state.pinned;
  if (!state.pinned) return;
  const children = [el("span", { class: "pin-label" }, "Pinned"), el("span", {}, `${nameOf(state.pinned.sender)}: ${state.pinned.text}`)];
  if (MODERATORS.has(state.role)) children.push(button("Unpin", "Unpin the message", () => client.pinMessage(null)));
  box.replaceChildren(...children);
}

function addMessage(message) {
  const item = el("li", { class: "message", "data-id": String(message.id) });
  if (message.sender === state.me) item.classList.add("mine");
  const time = new Date(message.at * 1000);
  const header = el("p", { class: "message-meta" },
    el("span", { class: "message-sender" }, nameOf(message.sender)),
    el("time", { datetime: time.toISOString() }, time.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" })));
  item.append(header, el("p", { class: "message-text" }, message.text));
  if (client && MODERATORS.has(state.role)) {
    item.append(button("Pin", "Pin this message", () => client.pinMessage(message.id), "link"));
  }
  const list = $("messages");
  list.append(item);
  while (list.children.length > 200) list.firstElementChild.remove();
  list.scrollTop = list.scrollHeight;
}

function showReaction(reaction) {
  const bubble = el("span", { class: "floating-reaction" }, reaction.emoji);
  bubble.style.left = `${20 + Math.random() * 60}%`;
  $("reaction-layer").append(bubble);
  setTimeout(() => bubble.remove(), 2500);
}

// -- small DOM helpers -------------------------------------------------------------

function el(tag, attributes = {}, ...children) {
  const element = document.createElement(tag);
  for (const [key, value] of Object.entries(attributes)) element.setAttribute(key, value);
  element.append(...children.filter((c) => c != null));
  return element;
}

function button(text, label, onClick, variant = "") {
  const b = el("button", { type: "button", class: `button small ${variant}`.trim(), "aria-label": label }, text);
  b.addEventListener("click", () => act(onClick));
  return b;
}

function personText(person, me = false) {
  const box = el("div", { class: "person-text" });
  const name = el("span", { class: "person-name" }, person.name || person.identity);
  if (me) name.append(" (you)");
  box.append(name);
  if (person.headline) box.append(el("span", { class: "person-headline" }, person.headline));
  return box;
}

function avatarFor(person, size) {
  const avatar = el("span", { class: `avatar ${size}`, "aria-hidden": "true" });
  avatar.style.setProperty("--hue", String(hue(person.identity ?? "")));
  if (person.avatar_url && /^https?:\/\//.test(person.avatar_url)) {
    avatar.append(el("img", { src: person.avatar_url, alt: "" }));
  } else {
    avatar.append(initials(person.name || person.identity || "?"));
  }
  return avatar;
}

function initials(name) {
  const parts = name.trim().split(/[\s._-]+/).filter(Boolean);
  const letters = parts.length > 1 ? parts[0][0] + parts[1][0] : name.slice(0, 2);
  return letters.toUpperCase();
}

function hue(text) {
  let h = 0;
  for (const ch of text) h = (h * 31 + ch.codePointAt(0)) % 360;
  return h;
}

const ICONS = {
  mic: "M12 14a3 3 0 0 0 3-3V5a3 3 0 0 0-6 0v6a3 3 0 0 0 3 3Zm5-3a5 5 0 0 1-10 0H5a7 7 0 0 0 6 6.92V21h2v-3.08A7 7 0 0 0 19 11h-2Z",
  "mic-off": "M19 11h-2a4.9 4.9 0 0 1-.6 2.4l1.5 1.5A6.9 6.9 0 0 0 19 11ZM15 11V5a3 3 0 0 0-5.9-.8L15 10.1V11ZM4.3 3 3 4.3l6 6V11a3 3 0 0 0 4.4 2.6l1.6 1.6A5 5 0 0 1 7 11H5a7 7 0 0 0 6 6.9V21h2v-3.1a6.9 6.9 0 0 0 3.3-1.3l3.4 3.4L21 18.7Z",
  hand: "M18 6.5a1.5 1.5 0 0 0-1.5 1.5v3.5h-1V4a1.5 1.5 0 0 0-3 0v7.5h-1V3a1.5 1.5 0 0 0-3 0v8.5h-1V5.5a1.5 1.5 0 0 0-3 0V15a7 7 0 0 0 7 7h.6a6.9 6.9 0 0 0 6.4-4.4l1.9-5.2A1.5 1.5 0 0 0 19.5 11V8A1.5 1.5 0 0 0 18 6.5Z",
};

function icon(name) {
  const svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
  svg.setAttribute("viewBox", "0 0 24 24");
  svg.setAttribute("aria-hidden", "true");
  svg.setAttribute("class", "icon");
  const path = document.createElementNS("http://www.w3.org/2000/svg", "path");
  path.setAttribute("d", ICONS[name]);
  svg.append(path);
  return svg;
}

let toastTimer = null;
function toast(text, error = false) {
  const box = $("toast");
  box.textContent = text;
  box.classList.toggle("error", error);
  box.classList.add("visible");
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => box.classList.remove("visible"), 4000);
}

function showJoinMessage(text) {
  $("join-message").textContent = text;
}

init();
