// juhe-sync: how a message looks, shared by the viewer and the HTML export. Every text is put in
// the page as a text node (never as HTML), so nothing a message carries can become markup.

const T = JSON.parse(document.getElementById("strings").textContent);

// el("div", {class: "x", "data-id": 1}, "text", child) — text children become text nodes.
function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "class") node.className = v; else node.setAttribute(k, v === true ? "" : String(v));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

// --- time -------------------------------------------------------------------------------------

// Times in the reader's time zone, unless the page names one (an export shows the devices' zone,
// JUHE_SYNC_TIME_ZONE, whoever opens it and wherever).
const ZONE = document.querySelector('meta[name="juhe-time-zone"]')?.content || undefined;
const zoned = (options) => new Intl.DateTimeFormat(document.documentElement.lang, ZONE ? { ...options, timeZone: ZONE } : options);
const dayFormat = zoned({ year: "numeric", month: "long", day: "numeric", weekday: "short" });
const timeFormat = zoned({ hour: "2-digit", minute: "2-digit" });
const shortFormat = zoned({ month: "numeric", day: "numeric" });
const dayKeyFormat = zoned({ year: "numeric", month: "2-digit", day: "2-digit" });

function dayKey(iso) { return dayKeyFormat.format(new Date(iso)); }

function when(iso) {
  return dayKey(new Date().toISOString()) === dayKey(iso) ? timeFormat.format(new Date(iso)) : shortFormat.format(new Date(iso));
}

// --- one message ------------------------------------------------------------------------------

function parsed(content) {
  try { const value = JSON.parse(content); return value && typeof value === "object" ? value : null; } catch { return null; }
}

// The first of ``keys`` in the payload, or in a nested object of it (``data.image`` and the like).
function pick(payload, ...keys) {
  if (!payload) return null;
  const stack = [payload];
  while (stack.length) {
    const obj = stack.shift();
    for (const k of keys) if (obj[k] !== undefined && obj[k] !== null && obj[k] !== "") return obj[k];
    for (const v of Object.values(obj)) if (v && typeof v === "object" && !Array.isArray(v)) stack.push(v);
  }
  return null;
}

function size(bytes) {
  const n = Number(bytes);
  if (!Number.isFinite(n) || n <= 0) return null;
  return n < 1024 ? `${n} B` : n < 1048576 ? `${(n / 1024).toFixed(1)} KB` : `${(n / 1048576).toFixed(1)} MB`;
}

function safeUrl(url) {
  try { const u = new URL(String(url)); return u.protocol === "http:" || u.protocol === "https:" ? u.href : null; } catch { return null; }
}

const URL_RE = /https?:\/\/[^\s<>"'，。！？、）】]+/g;

// Text with links, @mentions and the search keyword marked: text nodes and elements only.
function richText(text, keyword) {
  const out = [];
  let last = 0;
  for (const match of text.matchAll(URL_RE)) {
    out.push(...decorate(text.slice(last, match.index), keyword, true));
    const href = safeUrl(match[0]);
    out.push(href ? el("a", { href, target: "_blank", rel: "noopener noreferrer" }, match[0]) : match[0]);
    last = match.index + match[0].length;
  }
  out.push(...decorate(text.slice(last), keyword, true));
  return out;
}

const escapeRegExp = (s) => s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");

// One pass of one regular expression: the keyword (case-insensitive) and @mentions.
function decorate(text, keyword, mentions) {
  if (!text) return [];
  const parts = [];
  if (keyword) parts.push(`(${escapeRegExp(keyword)})`); else parts.push("($^)");
  if (mentions) parts.push("(@[^\\s@]{1,32})");
  const re = new RegExp(parts.join("|"), "giu");
  const out = [];
  let last = 0;
  for (const match of text.matchAll(re)) {
    if (!match[0]) { re.lastIndex += 1; continue; }
    if (match.index > last) out.push(text.slice(last, match.index));
    out.push(match[1] ? el("mark", {}, match[0]) : el("span", { class: "mention" }, match[0]));
    last = match.index + match[0].length;
  }
  if (last < text.length) out.push(text.slice(last));
  return out;
}

function card(kindLabel, title, ...subs) {
  return el("div", { class: "card" }, el("span", { class: "kind" }, kindLabel), title ? el("span", { class: "title" }, title) : null,
    ...subs.filter(Boolean).map((s) => (s instanceof Node ? s : el("span", { class: "sub" }, s))));
}

function body(m, keyword) {
  const payload = parsed(m.content);
  switch (m.type) {
    case "text": case "system":
      return richText(m.content, keyword);
    case "image":
      return card(T.image, null, [size(pick(payload, "size", "file_size")), pick(payload, "image_width") && `${pick(payload, "image_width")}×${pick(payload, "image_height")}`].filter(Boolean).join(" · "));
    case "voice": {
      const seconds = pick(payload, "voice_time", "duration");
      return card(T.voice, null, [seconds && `${seconds}${T.seconds}`, size(pick(payload, "size", "file_size"))].filter(Boolean).join(" · "));
    }
    case "video": {
      const seconds = pick(payload, "video_duration", "duration", "play_length");
      return card(T.video, null, [seconds && `${seconds}${T.seconds}`, size(pick(payload, "size", "file_size"))].filter(Boolean).join(" · "));
    }
    case "file":
      return card(T.file, pick(payload, "file_name", "filename", "title"), size(pick(payload, "size", "file_size")));
    case "link": case "weapp": case "channels": case "text_card": {
      const href = safeUrl(pick(payload, "url", "link_url", "href", "page_path"));
      return card(T[m.type], pick(payload, "title", "nickname", "name"), pick(payload, "desc", "description", "content"),
        href ? el("a", { href, target: "_blank", rel: "noopener noreferrer", class: "sub" }, href) : pick(payload, "appname", "app_name"));
    }
    case "location":
      return card(T.location, pick(payload, "title", "name"), pick(payload, "address", "label"));
    case "card":
      return card(T.card, pick(payload, "nickname", "name", "user_name"), pick(payload, "corp_name", "user_id"));
    case "revoke":
      return card(T.revoke, null);
    case "hongbao": case "gif": case "mixed": case "merged": case "read_report":
      return card(T[m.type], pick(payload, "title", "wishing"), raw(m));
    default:
      return card(T.unsupported, `msg_type ${m.msg_type}`, raw(m));
  }
}

function raw(m) {
  const payload = parsed(m.content);
  return el("details", {}, el("summary", {}, T.raw), el("pre", {}, payload ? JSON.stringify(payload, null, 2) : m.content));
}

function messageNode(m, keyword = null) {
  const system = m.type === "system" || m.type === "revoke";
  const name = m.direction === "outbound" ? "" : (m.sender_name || m.from);
  const node = el("div", { class: `msg ${system ? "system" : m.direction}`, "data-id": m.id },
    system ? null : el("div", { class: "meta" }, name ? `${name} · ` : "", timeFormat.format(new Date(m.timestamp)),
      m.revoked ? el("span", { class: "badge" }, T.revoked) : null),
    el("div", { class: "bubble" },
      m.quote_content ? el("div", { class: "quote", title: T.quote }, m.quote_content) : null,
      body(m, keyword)));
  node.message = m;
  return node;
}

// Nodes for ``messages`` (oldest first) with a separator before each new day; ``nodeFor(m)``
// makes (or finds) the node of one message.
function withDays(messages, nodeFor) {
  const nodes = [];
  let day = null;
  for (const m of messages) {
    if (dayKey(m.timestamp) !== day) { day = dayKey(m.timestamp); nodes.push(el("div", { class: "day" }, dayFormat.format(new Date(m.timestamp)))); }
    nodes.push(nodeFor(m));
  }
  return nodes;
}
