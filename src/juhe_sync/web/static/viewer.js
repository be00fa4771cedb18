// juhe-sync viewer. Plain DOM, no framework, no build step. Messages are drawn by render.js, which
// the HTML export shares; here too every text from the server becomes a text node, never HTML.

const $ = (id) => document.getElementById(id);
const PAGE = 50;

const state = {
  guid: null, devices: [], kind: "", filter: "", conversation: null, convCursor: null,
  older: null, newer: null, loading: false, search: null, highlight: null,
  // Bumped whenever what is shown changes: an answer for an older view is dropped.
  listGeneration: 0, chatGeneration: 0,
};

class ApiError extends Error {
  constructor(message, status) { super(message); this.status = status; }
}

async function api(path, params = {}, options = {}) {
  const url = new URL(path, location.origin);
  for (const [k, v] of Object.entries(params)) if (v !== null && v !== undefined && v !== "") url.searchParams.set(k, v);
  const response = await fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" }, ...options });
  if (response.status === 204) return null;
  const body = await response.json().catch(() => null);
  if (response.status === 401) { showSignIn(); throw new ApiError(body?.error || "401", 401); }
  if (!response.ok) throw new ApiError(body?.error || response.statusText, response.status);
  return body.data;
}


function toast(text) {
  const t = $("toast");
  t.textContent = text;
  t.hidden = false;
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => { t.hidden = true; }, 4000);
}

function failed(error) { if (!(error instanceof ApiError && error.status === 401)) toast(`${T.error}: ${error.message}`); }


// --- sign-in ----------------------------------------------------------------------------------

function showSignIn() {
  $("app").hidden = true;
  $("signin").hidden = false;
  $("sign-out").hidden = true;
  $("token").focus();
}

$("signin-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  $("signin-error").hidden = true;
  try {
    const response = await fetch("/session", {
      method: "POST", credentials: "same-origin",
      headers: { "Content-Type": "application/json" }, body: JSON.stringify({ token: $("token").value }),
    });
    if (!response.ok) throw new Error(T.bad_token);
    $("token").value = "";
    $("signin").hidden = true;
    await start();
  } catch (error) {
    $("signin-error").textContent = error.message;
    $("signin-error").hidden = false;
  }
});

$("sign-out").addEventListener("click", async () => {
  await fetch("/session", { method: "DELETE", credentials: "same-origin" });
  location.reload();
});

for (const button of document.querySelectorAll(".lang")) {
  button.addEventListener("click", () => {
    document.cookie = `juhe_sync_lang=${button.dataset.lang}; path=/; SameSite=Strict; max-age=31536000`;
    location.reload();
  });
}

// --- devices ----------------------------------------------------------------------------------

async function start() {
  const data = await api("/api/devices", { limit: 100 });
  $("signin").hidden = true;
  $("app").hidden = false;
  $("sign-out").hidden = false;
  state.devices = data.devices;
  const select = $("device");
  select.replaceChildren(...data.devices.map((d) => el("option", { value: d.guid }, d.name ? `${d.name} (${d.guid})` : d.guid)));
  if (!data.devices.length) {
    $("conversations").replaceChildren(el("li", { class: "empty" }, T.no_devices));
    return;
  }
  const wanted = new URLSearchParams(location.hash.slice(1)).get("guid");
  state.guid = data.devices.some((d) => d.guid === wanted) ? wanted : data.devices[0].guid;
  select.value = state.guid;
  showDevice();
  await loadConversations(true);
}

$("device").addEventListener("change", async (event) => {
  state.guid = event.target.value;
  state.conversation = null;
  state.search = null;
  $("results").hidden = true;
  $("hits").replaceChildren();
  clearChat();
  showDevice();
  await loadConversations(true).catch(failed);
});

function showDevice() {
  const device = state.devices.find((d) => d.guid === state.guid);
  const chip = $("device-state");
  const online = device.online === true ? T.online : device.online === false ? T.offline : T.unknown_state;
  chip.textContent = `${online} · ${T[`status_${device.status}`] || device.status}`;
  chip.className = `chip ${device.online ? "online" : ""} ${device.status === "error" ? "error" : ""}`;
  chip.title = device.last_error || "";
  chip.hidden = false;
  $("sync-now").hidden = false;
}

$("sync-now").addEventListener("click", async () => {
  try {
    await api("/api/sync", { guid: state.guid }, { method: "POST" });
    toast(T.sync_queued);
  } catch (error) { failed(error); }
});

// --- conversations ----------------------------------------------------------------------------

async function loadConversations(fresh) {
  if (!state.guid) return;
  if (fresh) { state.convCursor = null; state.listGeneration += 1; $("conversations").replaceChildren(); }
  const generation = state.listGeneration;
  const data = await api("/api/conversations", {
    guid: state.guid, kind: state.kind, keyword: state.filter, limit: PAGE, cursor: state.convCursor,
  });
  if (generation !== state.listGeneration) return;  // the device, filter or kind changed meanwhile
  const list = $("conversations");
  list.querySelector(".empty")?.remove();
  for (const c of data.conversations) list.append(conversationItem(c));
  if (!list.children.length) list.append(el("li", { class: "empty" }, T.no_conversations));
  state.convCursor = data.next_cursor;
  $("more-conversations").hidden = !data.next_cursor;
}

function avatar(name) { return el("span", { class: "avatar", "aria-hidden": "true" }, [...(name || "?")][0]); }

// The server's preview labels media in Chinese; the page says it in its own language.
function previewText(last) {
  const textLike = last.type === "text" || last.type === "system";
  return last.revoked ? `[${T.revoked}]` : !textLike && T[last.type] ? `[${T[last.type]}]` : last.text;
}

function conversationItem(c) {
  const last = c.last_message;
  const sender = c.kind === "R" && last.direction === "inbound" && last.sender_name ? `${last.sender_name}: ` : "";
  const button = el("button", { type: "button", class: "conversation", "data-id": c.conversation_id },
    avatar(c.name), el("span", { class: "name" }, c.name), el("span", { class: "time" }, when(c.last_message_time)),
    el("span", { class: "preview" }, sender + previewText(last)));
  button.addEventListener("click", () => { state.highlight = null; openConversation(c).catch(failed); });
  return el("li", {}, button);
}

$("more-conversations").addEventListener("click", () => loadConversations(false).catch(failed));

let filterTimer;
$("conversation-filter").addEventListener("input", (event) => {
  clearTimeout(filterTimer);
  filterTimer = setTimeout(() => { state.filter = event.target.value.trim(); loadConversations(true).catch(failed); }, 250);
});

for (const button of document.querySelectorAll(".kind")) {
  button.addEventListener("click", () => {
    for (const b of document.querySelectorAll(".kind")) { b.classList.toggle("current", b === button); b.setAttribute("aria-pressed", String(b === button)); }
    state.kind = button.dataset.kind;
    loadConversations(true).catch(failed);
  });
}

// --- a conversation ---------------------------------------------------------------------------

function clearChat() {
  state.chatGeneration += 1;
  state.older = state.newer = null;
  state.loading = false;
  $("messages").replaceChildren();
  $("chat-title").textContent = T.select_conversation;
  $("toggle-details").hidden = true;
  $("export").hidden = true;
  $("details").hidden = true;
}

async function openConversation(c, around = null) {
  const generation = ++state.chatGeneration;
  state.older = state.newer = null;
  state.loading = false;
  state.conversation = c;
  for (const b of document.querySelectorAll(".conversation")) b.classList.toggle("current", b.dataset.id === c.conversation_id);
  $("chat-title").textContent = c.name;
  $("toggle-details").hidden = false;
  for (const format of ["csv", "jsonl"]) {
    // A same-origin download: the session cookie goes with it, as with every API read.
    const url = new URL("/api/export", location.origin);
    url.search = new URLSearchParams({ guid: state.guid, conversation_id: c.conversation_id, format });
    $(`export-${format}`).href = url.pathname + url.search;
  }
  $("export").hidden = false;
  $("details").hidden = true;
  $("app").classList.add("show-chat");
  $("app").classList.remove("show-details");
  const box = $("messages");
  box.replaceChildren();
  if (around) {
    const data = await api("/api/messages", { guid: state.guid, around, conversation_id: c.conversation_id, limit: PAGE, order: "asc" });
    if (generation !== state.chatGeneration) return;
    state.older = data.prev_cursor;
    state.newer = data.next_cursor;
    renderMessages(data.messages, "end");
    const focus = box.querySelector(`[data-id="${CSS.escape(around)}"]`);
    if (focus) { focus.classList.add("focus"); focus.scrollIntoView({ block: "center" }); }
  } else {
    const data = await api("/api/messages", { guid: state.guid, conversation_id: c.conversation_id, limit: PAGE, order: "desc" });
    if (generation !== state.chatGeneration) return;
    state.older = data.next_cursor;
    renderMessages(data.messages.reverse(), "end");
    box.scrollTop = box.scrollHeight;
  }
  updatePagers();
}

function updatePagers() {
  const box = $("messages");
  box.querySelector(".more.older")?.remove();
  box.querySelector(".more.newer")?.remove();
  if (state.older) {
    const b = el("button", { type: "button", class: "more older" }, T.load_older);
    b.addEventListener("click", () => loadOlder().catch(failed));
    box.prepend(b);
  }
  if (state.newer) {
    const b = el("button", { type: "button", class: "more newer" }, T.load_newer);
    b.addEventListener("click", () => loadNewer().catch(failed));
    box.append(b);
  }
}

async function loadOlder() {
  if (!state.older || state.loading) return;
  const generation = state.chatGeneration;
  state.loading = true;
  try {
    const box = $("messages");
    const before = box.scrollHeight - box.scrollTop;
    const data = await api("/api/messages", {
      guid: state.guid, conversation_id: state.conversation.conversation_id, limit: PAGE, order: "desc", cursor: state.older,
    });
    if (generation !== state.chatGeneration) return;
    state.older = data.next_cursor;
    renderMessages(data.messages.reverse(), "start");
    updatePagers();
    box.scrollTop = box.scrollHeight - before;  // the message that was on top stays in place
  } finally { if (generation === state.chatGeneration) state.loading = false; }
}

async function loadNewer() {
  if (!state.newer || state.loading) return;
  const generation = state.chatGeneration;
  state.loading = true;
  try {
    const data = await api("/api/messages", {
      guid: state.guid, conversation_id: state.conversation.conversation_id, limit: PAGE, order: "asc", cursor: state.newer,
    });
    if (generation !== state.chatGeneration) return;
    state.newer = data.next_cursor;
    renderMessages(data.messages, "end");
    updatePagers();
  } finally { if (generation === state.chatGeneration) state.loading = false; }
}

$("messages").addEventListener("scroll", () => {
  const box = $("messages");
  if (box.scrollTop < 80) loadOlder().catch(failed);
  else if (box.scrollHeight - box.scrollTop - box.clientHeight < 80) loadNewer().catch(failed);
});

// Messages oldest first; day separators between days. ``where``: "start" (older) or "end".
function renderMessages(messages, where) {
  const box = $("messages");
  const existing = [...box.querySelectorAll(".msg")];
  const all = where === "start" ? [...messages, ...existing.map((n) => n.message)] : [...existing.map((n) => n.message), ...messages];
  const kept = new Map(existing.map((n) => [n.message, n]));
  const nodes = withDays(all, (m) => kept.get(m) || messageNode(m, state.highlight));
  const focus = box.querySelector(".msg.focus");
  box.replaceChildren(...nodes);
  if (focus) focus.classList.add("focus");
}

// --- details ----------------------------------------------------------------------------------

$("toggle-details").addEventListener("click", () => toggleDetails().catch(failed));
$("back").addEventListener("click", () => {
  const app = $("app");
  if (app.classList.contains("show-details")) app.classList.remove("show-details");
  else app.classList.remove("show-chat");
});

async function toggleDetails() {
  const panel = $("details");
  if (!panel.hidden) { panel.hidden = true; $("app").classList.remove("show-details"); return; }
  const c = state.conversation;
  const rows = [[T.message_count, String(c.message_count)], ["ID", c.conversation_id]];
  if (c.kind === "S") {
    const userId = c.conversation_id.slice(2);
    const data = await api("/api/contacts", { guid: state.guid, keyword: c.remark || c.name, limit: 100 })
      .catch(() => ({ contacts: [] }));  // details still open without them
    const contact = data.contacts.find((x) => x.id === userId);
    if (contact) {
      rows.push([T.contact_name, contact.name || ""], [T.remark, contact.remark || ""], [T.contact_type, contact.type]);
      if (contact.corp_id) rows.push(["corp_id", contact.corp_id]);
    }
  }
  const parts = [el("h3", {}, c.name), el("dl", {}, ...rows.flatMap(([k, v]) => [el("dt", {}, k), el("dd", {}, v)]))];
  if (c.kind === "R") {
    parts.push(el("h3", {}, T.members));
    try {
      const data = await api(`/api/rooms/${encodeURIComponent(c.conversation_id)}/members`, { guid: state.guid, limit: 100 });
      parts.push(data.members.length
        ? el("ul", {}, ...data.members.map((m) => el("li", {}, m.room_nickname || m.name || m.id, m.remark ? ` (${m.remark})` : "")))
        : el("p", { class: "empty" }, T.no_members));
    } catch (error) {
      if (error.status !== 404) throw error;
      parts.push(el("p", { class: "empty" }, T.no_members));
    }
  }
  const status = await api("/api/sync-status", { guid: state.guid });
  parts.push(el("h3", {}, T.sync_status), el("dl", {}, ...Object.entries(status.sync).flatMap(([kind, s]) =>
    [el("dt", {}, kind), el("dd", {}, `${s.status}${s.last_success ? ` · ${when(s.last_success)}` : ""}${s.last_error ? ` · ${s.last_error}` : ""}`)])));
  panel.replaceChildren(...parts);
  panel.hidden = false;
  $("app").classList.add("show-details");
}

// --- search -----------------------------------------------------------------------------------

$("search-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const keyword = $("search").value.trim();
  if (!keyword || !state.guid) return;
  state.search = {
    keyword, cursor: null,
    conversation: $("search-here").checked && state.conversation ? state.conversation.conversation_id : null,
    start: localDay($("search-from").value, false), end: localDay($("search-to").value, true),
  };
  $("hits").replaceChildren();
  searchPage().catch(failed);
});

// A date of the picker as the start or end of that day in the browser's time zone (UTC on the wire).
function localDay(value, end) {
  if (!value) return null;
  const [y, m, d] = value.split("-").map(Number);
  const day = end ? new Date(y, m - 1, d, 23, 59, 59, 999) : new Date(y, m - 1, d);
  return day.toISOString();
}

$("more-hits").addEventListener("click", () => searchPage().catch(failed));
$("results-close").addEventListener("click", () => { $("results").hidden = true; state.search = null; });

async function searchPage() {
  const s = state.search;
  const data = await api("/api/messages", {
    guid: state.guid, keyword: s.keyword, conversation_id: s.conversation, start_time: s.start, end_time: s.end,
    limit: PAGE, cursor: s.cursor,
  });
  s.cursor = data.next_cursor;
  $("results").hidden = false;
  // A capped count (JUHE_SYNC_SEARCH_COUNT_LIMIT) is a lower bound.
  $("results-total").textContent = `(${data.total}${data.total_capped ? "+" : ""})`;
  const hits = $("hits");
  for (const m of data.messages) hits.append(hitItem(m, s.keyword));
  if (!hits.children.length) hits.append(el("li", { class: "empty" }, T.no_results));
  $("more-hits").hidden = !data.next_cursor;
  $("app").classList.add("show-chat");
}

function hitItem(m, keyword) {
  const text = m.type === "text" || m.type === "system" ? m.content : T[m.type] || m.type;
  const button = el("button", { type: "button", class: "hit", title: T.open_in_context },
    el("div", { class: "meta" }, `${m.sender_name || m.from} · ${m.conversation_id} · ${dayFormat.format(new Date(m.timestamp))} ${timeFormat.format(new Date(m.timestamp))}`),
    el("div", { class: "text" }, ...decorate(text, keyword, false)));
  button.addEventListener("click", async () => {
    try {
      const c = await conversationFor(m.conversation_id);
      state.highlight = keyword;
      await openConversation(c, m.id);
    } catch (error) { failed(error); }
  });
  return el("li", {}, button);
}

async function conversationFor(id) {
  const listed = [...document.querySelectorAll(".conversation")].find((b) => b.dataset.id === id);
  const data = await api("/api/conversations", { guid: state.guid, keyword: id.slice(2), limit: 100 });
  const found = data.conversations.find((c) => c.conversation_id === id);
  return found || { conversation_id: id, kind: id[0], name: listed?.querySelector(".name")?.textContent || id.slice(2), message_count: 0 };
}

start().catch((error) => { if (!(error instanceof ApiError && error.status === 401)) failed(error); });
