// Loyalbot demo chat: plays Telegram users against the local Bot API server's control API.
// Plain JavaScript, no framework and nothing from the network, so it works offline.
"use strict";

const state = {
  config: { identities: [], staff_group: null, bot: null },
  identity: null,          // the identity (user) the person is acting as
  view: "private",         // "private" | "group"
  seq: 0,                  // position in the server's change feed
  thread: 0,               // selected topic in the staff group (0 = General)
  groupData: null,         // last transcript of the staff group
  seenCounts: {},          // thread -> messages seen, for unread badges
  pendingPresses: new Map(), // callback_query_id -> button element
  replyTo: { private: null, group: null },
  editing: { private: null, group: null }, // the own message being edited, per view
  lang: "en",              // page language, from the identity's language_code
  instance: null,          // the server run the page follows; a new one means reload everything
  refreshing: {},
  again: {},
};

const $ = (id) => document.getElementById(id);
const STORAGE_KEY = "loyalbot-demo-identity";
const TOPIC_COLORS = { 7322096: "#6fb9f0", 16766590: "#ffd67e", 13338331: "#cb86db", 9367192: "#8eee98",
  16749490: "#ff93b2", 16478047: "#fb6f5f" };

// ------------------------------------------------------------------------------- control API

async function api(path, options = {}) {
  const init = { method: options.method || "GET", headers: {} };
  if (options.body !== undefined) {
    init.method = options.method || "POST";
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(options.body);
  }
  const response = await fetch(`/control/${path}`, init);
  const data = await response.json().catch(() => ({}));
  if (!response.ok) {
    throw new Error(data.error || `HTTP ${response.status}`);
  }
  return data;
}

// ------------------------------------------------------------------------------- page language

function t(key, values) {
  const table = PAGE_TEXTS[state.lang] || PAGE_TEXTS.en;
  let text = table[key] !== undefined ? table[key] : PAGE_TEXTS.en[key] !== undefined ? PAGE_TEXTS.en[key] : key;
  for (const [name, value] of Object.entries(values || {})) text = text.split(`{${name}}`).join(String(value));
  return text;
}

function applyLanguage(code) {
  state.lang = pageLanguage(code);
  document.documentElement.lang = PAGE_LOCALES[state.lang];
  document.title = `${t("title")} · chat`;
  for (const node of document.querySelectorAll("[data-i18n]")) node.textContent = t(node.dataset.i18n);
  for (const node of document.querySelectorAll("[data-i18n-placeholder]")) node.placeholder = t(node.dataset.i18nPlaceholder);
  for (const node of document.querySelectorAll("[data-i18n-aria]")) node.setAttribute("aria-label", t(node.dataset.i18nAria));
  for (const node of document.querySelectorAll("[data-i18n-title]")) node.title = t(node.dataset.i18nTitle);
  timeFormat = null;
}

function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

function fileUrl(fileId, download) {
  return `/control/files/${encodeURIComponent(fileId)}${download ? "?download=1" : ""}`;
}

// ------------------------------------------------------------------------------- formatting

// Build DOM from plain text + Telegram entities (UTF-16 offsets, which JS strings use too).
// Every piece of text becomes a text node, so nothing the bot sends can inject markup.
function renderEntities(text, entities) {
  const fragment = document.createDocumentFragment();
  const sorted = (entities || [])
    .filter((e) => e && e.length > 0)
    .slice()
    .sort((a, b) => a.offset - b.offset || b.length - a.length);
  buildEntities(fragment, text || "", 0, (text || "").length, sorted);
  return fragment;
}

function buildEntities(parent, text, start, end, entities) {
  let pos = start;
  let i = 0;
  while (i < entities.length) {
    const entity = entities[i];
    const from = Math.max(entity.offset, start);
    const to = Math.min(entity.offset + entity.length, end);
    if (from >= to || from < pos) {
      i += 1;
      continue;
    }
    if (from > pos) parent.append(text.slice(pos, from));
    const children = [];
    let j = i + 1;
    while (j < entities.length && entities[j].offset < to) {
      children.push(entities[j]);
      j += 1;
    }
    const { outer, inner } = entityElement(entity, text.slice(from, to));
    buildEntities(inner, text, from, to, children);
    parent.append(outer);
    pos = to;
    i = j;
  }
  if (pos < end) parent.append(text.slice(pos, end));
}

function safeHref(url) {
  const value = String(url || "").trim();
  if (/^(https?:|tg:|mailto:|tel:)/i.test(value)) return value;
  if (/^[\w.-]+\.[a-z]{2,}(\/|$)/i.test(value)) return `https://${value}`;
  return null;
}

function entityElement(entity, content) {
  const simple = { bold: "b", italic: "i", underline: "u", strikethrough: "s", code: "code" };
  if (simple[entity.type]) {
    const el = document.createElement(simple[entity.type]);
    return { outer: el, inner: el };
  }
  if (entity.type === "pre") {
    const pre = document.createElement("pre");
    const code = document.createElement("code");
    if (entity.language) code.className = `language-${entity.language.replace(/[^\w-]/g, "")}`;
    pre.append(code);
    return { outer: pre, inner: code };
  }
  if (entity.type === "text_link" || entity.type === "url" || entity.type === "email" || entity.type === "phone_number") {
    let href = entity.type === "text_link" ? entity.url : content;
    if (entity.type === "email") href = `mailto:${content}`;
    if (entity.type === "phone_number") href = `tel:${content.replace(/[^\d+]/g, "")}`;
    const safe = safeHref(href);
    if (!safe) {
      const span = document.createElement("span");
      return { outer: span, inner: span };
    }
    const a = document.createElement("a");
    a.href = safe;
    a.target = "_blank";
    a.rel = "noopener noreferrer";
    return { outer: a, inner: a };
  }
  if (entity.type === "blockquote" || entity.type === "expandable_blockquote") {
    const el = document.createElement("blockquote");
    return { outer: el, inner: el };
  }
  const span = document.createElement("span");
  if (entity.type === "spoiler") {
    span.className = "spoiler";
    span.title = t("spoiler");
    span.addEventListener("click", () => span.classList.toggle("revealed"));
  } else if (entity.type === "bot_command") {
    span.className = "cmd";
    span.title = t("send_command");
    span.addEventListener("click", () => sendPrivateText(content));
  } else if (entity.type === "mention" || entity.type === "text_mention") {
    span.className = "mention";
  } else if (entity.type === "hashtag" || entity.type === "cashtag") {
    span.className = "hashtag";
  }
  return { outer: span, inner: span };
}

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined && text !== null) node.textContent = text;
  return node;
}

// Bubble times are the shop's (LOYALBOT_TIMEZONE, which the bot's own texts use), on a 24-hour clock.
let timeFormat = null;
function shopZone() {
  const info = state.config.info || {};
  return info.timezone || undefined;
}

function timeOf(unix) {
  if (!timeFormat) {
    const options = { hour: "2-digit", minute: "2-digit", hourCycle: "h23" };
    try {
      timeFormat = new Intl.DateTimeFormat(PAGE_LOCALES[state.lang], { ...options, timeZone: shopZone() });
    } catch (error) { // an unknown zone: the browser's, still 24-hour
      timeFormat = new Intl.DateTimeFormat(PAGE_LOCALES[state.lang], options);
    }
  }
  return timeFormat.format(new Date(unix * 1000));
}

function fullTimeOf(unix) {
  const options = { dateStyle: "medium", timeStyle: "short", hourCycle: "h23" };
  try {
    return new Intl.DateTimeFormat(PAGE_LOCALES[state.lang], { ...options, timeZone: shopZone() }).format(new Date(unix * 1000))
      + (shopZone() ? ` (${shopZone()})` : "");
  } catch (error) {
    return new Date(unix * 1000).toISOString();
  }
}

function formatSize(bytes) {
  if (!bytes && bytes !== 0) return "";
  if (bytes < 1024) return `${bytes} B`;
  if (bytes < 1024 * 1024) return `${(bytes / 1024).toFixed(1)} KB`;
  return `${(bytes / 1024 / 1024).toFixed(1)} MB`;
}

function senderName(message) {
  const from = message.message && message.message.from;
  if (!from) return "";
  return [from.first_name, from.last_name].filter(Boolean).join(" ");
}

function snippet(entry) {
  const message = entry.message || entry;
  if (message.text) return message.text;
  if (message.caption) return message.caption;
  if (message.photo) return `🖼 ${t("photo")}`;
  if (message.document) return `📄 ${message.document.file_name || t("file")}`;
  if (message.contact) return `👤 ${message.contact.first_name || t("contact")}`;
  if (message.sticker) return t("sticker");
  if (message.voice) return `🎤 ${t("voice")}`;
  if (message.video) return `🎬 ${t("video")}`;
  if (message.location) return `📍 ${t("location")}`;
  return serviceText(message) || t("message");
}

function serviceText(message) {
  if (message.forum_topic_created) return t("topic_created", { name: message.forum_topic_created.name });
  if (message.forum_topic_edited) {
    return message.forum_topic_edited.name ? t("topic_renamed", { name: message.forum_topic_edited.name }) : t("topic_edited");
  }
  if (message.forum_topic_closed) return t("topic_closed_service");
  if (message.forum_topic_reopened) return t("topic_reopened");
  if (message.new_chat_members) return t("members_joined");
  return "";
}

// ------------------------------------------------------------------------------- messages

// A chat sticks to its newest message unless the person scrolled up to read: the flag is kept per list and
// re-applied when images finish loading or the list is resized (e.g. a reply keyboard appears).
// Only a scroll *up* unsticks: when the list shrinks under a new reply keyboard, the browser fires a scroll
// event with the newest message out of sight, and judging by distance alone read that as "scrolled away"
// (so every later answer landed below the fold).
function isNearBottom(container) {
  return container.scrollHeight - container.scrollTop - container.clientHeight < 80;
}

function keepAtBottom(container) {
  if (container && container.dataset.stick !== "false") {
    container.scrollTop = container.scrollHeight;
    container.dataset.lastTop = String(container.scrollTop);
  }
}

function followNewest(container) {
  // Only the person unsticks the list: a scroll up right after their wheel, touch, key or mouse press.
  // Layout moves the list too (a keyboard appears, a message is re-drawn, an image loads); on a busy
  // machine such a move can land as a scroll "up", and must not stop the list following new messages.
  let gestureAt = 0;
  for (const kind of ["wheel", "touchstart", "touchmove", "keydown", "mousedown"]) {
    container.addEventListener(kind, () => { gestureAt = Date.now(); }, { passive: true });
  }
  container.addEventListener("scroll", () => {
    const top = container.scrollTop;
    const last = Number(container.dataset.lastTop || 0);
    if (isNearBottom(container)) container.dataset.stick = "true";
    else if (top < last - 1 && Date.now() - gestureAt < 1000) container.dataset.stick = "false";
    container.dataset.lastTop = String(top);
  });
  if (window.ResizeObserver) {
    const observer = new ResizeObserver(() => keepAtBottom(container));
    observer.observe(container);
    // The list's own height stays put when a bubble grows (an edit, a keyboard): watch the bubbles too.
    new MutationObserver(() => {
      for (const row of container.children) observer.observe(row);
    }).observe(container, { childList: true });
  }
}

function onMediaLoaded(event) {
  keepAtBottom(event.target.closest(".messages"));
}

function renderMessages(container, entries, options) {
  if (options.forceScroll) container.dataset.stick = "true";
  const fragment = document.createDocumentFragment();
  const visible = entries.filter((m) => !m.deleted);
  if (!visible.length && options.empty) fragment.append(options.empty());
  for (const entry of visible) fragment.append(renderMessage(entry, options));
  container.replaceChildren(fragment);
  keepAtBottom(container);
}

function renderMessage(entry, options) {
  const message = entry.message || {};
  const mine = entry.direction === "user" && state.identity && entry.from_id === state.identity.id;
  const row = el("div", `row ${entry.kind === "service" ? "service" : mine ? "out" : "in"}`);
  row.dataset.testid = "message-bubble";
  row.dataset.messageId = String(entry.message_id);
  row.dataset.direction = entry.direction;
  row.dataset.fromId = String(entry.from_id);
  row.dataset.kind = entry.kind;
  const bubble = el("div", "bubble");
  row.append(bubble);

  if (entry.kind === "service") {
    bubble.textContent = serviceText(message);
    return row;
  }
  if (options.showSender && !mine) {
    const sender = el("div", "sender", senderName(entry) + (entry.direction === "bot" ? t("bot_suffix") : ""));
    bubble.append(sender);
  }
  const reply = message.reply_to_message;
  if (reply && !(reply.forum_topic_created && reply.message_id === entry.thread_id)) {
    const quote = el("div", "quote");
    quote.dataset.testid = "message-quote";
    const from = reply.from ? [reply.from.first_name, reply.from.last_name].filter(Boolean).join(" ") : "";
    quote.append(el("div", "quote-from", from), el("div", "quote-text", snippet(reply)));
    bubble.append(quote);
  }
  if (message.forward_origin) {
    const origin = message.forward_origin;
    const who = origin.sender_user ? origin.sender_user.first_name : origin.sender_user_name || t("someone");
    bubble.append(el("div", "sender", t("forwarded", { name: who })));
  }
  appendMedia(bubble, message);
  const text = message.text !== undefined ? message.text : message.caption;
  if (text) {
    const body = el("div", "text");
    body.dataset.testid = "message-text";
    body.append(renderEntities(text, message.entities || message.caption_entities));
    bubble.append(body);
  }
  const meta = el("div", "meta");
  if (options.allowReply) {
    const replyButton = el("button", "reply-link", t("reply"));
    replyButton.type = "button";
    replyButton.dataset.testid = "reply-to-button";
    replyButton.addEventListener("click", () => setReplyTo(options.view, entry));
    meta.append(replyButton);
  }
  if (mine && message.text !== undefined) {
    const editButton = el("button", "reply-link", t("edit"));
    editButton.type = "button";
    editButton.dataset.testid = "edit-button";
    editButton.addEventListener("click", () => startEditing(options.view, entry));
    meta.append(editButton);
  }
  if (entry.edited) {
    const edited = el("span", "edited", t("edited"));
    edited.dataset.testid = "edited-mark";
    meta.append(edited);
  }
  const time = el("time", "time", timeOf(entry.date));
  time.dataset.testid = "message-time";
  time.dateTime = new Date(entry.date * 1000).toISOString();
  time.title = fullTimeOf(entry.date);
  meta.append(time);
  bubble.append(meta);

  const markup = entry.reply_markup;
  if (markup && Array.isArray(markup.inline_keyboard) && markup.inline_keyboard.length) {
    row.append(renderInlineKeyboard(entry, markup.inline_keyboard, options));
  }
  return row;
}

function appendMedia(bubble, message) {
  if (message.photo && message.photo.length) {
    const size = message.photo[message.photo.length - 1];
    const img = el("img", "photo");
    img.src = fileUrl(size.file_id);
    img.alt = message.caption || "Photo";
    img.addEventListener("load", onMediaLoaded);
    img.dataset.testid = "message-photo";
    img.dataset.fileId = size.file_id;
    if (size.width && size.width <= 600 && size.width === size.height) img.classList.add("qr");
    bubble.append(img);
  }
  if (message.sticker) {
    const img = el("img", "sticker");
    img.src = fileUrl(message.sticker.file_id);
    img.alt = message.sticker.emoji || "Sticker";
    img.addEventListener("load", onMediaLoaded);
    img.dataset.testid = "message-sticker";
    bubble.append(img);
  }
  const doc = message.document || message.audio;
  if (doc) {
    const link = el("a", "doc");
    link.href = fileUrl(doc.file_id, true);
    link.dataset.testid = "message-document";
    link.dataset.fileId = doc.file_id;
    link.setAttribute("download", doc.file_name || "file");
    const info = el("div");
    info.append(el("div", "doc-name", doc.file_name || "File"), el("div", "doc-size", formatSize(doc.file_size)));
    const icon = el("div", "doc-icon", "📄");
    icon.setAttribute("aria-hidden", "true");
    link.append(icon, info);
    bubble.append(link);
  }
  if (message.voice) {
    const audio = el("audio");
    audio.controls = true;
    audio.src = fileUrl(message.voice.file_id);
    audio.dataset.testid = "message-voice";
    bubble.append(audio);
  }
  if (message.video || message.animation) {
    const media = message.video || message.animation;
    const video = el("video");
    video.controls = true;
    video.src = fileUrl(media.file_id);
    video.dataset.testid = "message-video";
    bubble.append(video);
  }
  if (message.contact) {
    const card = el("div", "contact");
    card.dataset.testid = "message-contact";
    const contact = message.contact;
    const info = el("div");
    info.append(
      el("div", "doc-name", [contact.first_name, contact.last_name].filter(Boolean).join(" ")),
      el("div", "doc-size", contact.phone_number),
    );
    const avatar = el("div", "avatar", "👤");
    avatar.setAttribute("aria-hidden", "true");
    card.append(avatar, info);
    bubble.append(card);
  }
  if (message.location) {
    const loc = el("div", "text", `📍 ${message.location.latitude.toFixed(5)}, ${message.location.longitude.toFixed(5)}`);
    loc.dataset.testid = "message-location";
    bubble.append(loc);
  }
}

function renderInlineKeyboard(entry, rows, options) {
  const keyboard = el("div", "inline-keyboard");
  keyboard.dataset.testid = "inline-keyboard";
  for (const buttons of rows) {
    const row = el("div", "inline-row");
    for (const button of buttons) {
      let node;
      const href = button.url ? safeHref(button.url) : null;
      if (href) {
        node = el("a", "inline-button", `${button.text} ↗`);
        node.href = href;
        node.target = "_blank";
        node.rel = "noopener noreferrer";
      } else {
        node = el("button", "inline-button", button.text);
        node.type = "button";
        if (button.callback_data !== undefined) {
          node.dataset.callbackData = button.callback_data;
          node.addEventListener("click", () => pressInline(entry, button.callback_data, node, options));
        } else if (button.copy_text) {
          node.addEventListener("click", () => {
            navigator.clipboard && navigator.clipboard.writeText(button.copy_text.text);
            showToast(t("copied"));
          });
        } else {
          node.disabled = true;
          node.title = t("not_available");
        }
      }
      node.dataset.testid = "inline-button";
      row.append(node);
    }
    keyboard.append(row);
  }
  return keyboard;
}

async function pressInline(entry, data, node, options) {
  if (!state.identity) return;
  node.classList.add("pending");
  const list = node.closest(".messages");
  if (list && isNearBottom(list)) list.dataset.stick = "true";
  try {
    const result = await api("press", {
      body: { user_id: state.identity.id, chat_id: entry.chat_id, message_id: entry.message_id, data },
    });
    state.pendingPresses.set(result.callback_query_id, node);
    setTimeout(() => {
      if (state.pendingPresses.get(result.callback_query_id) === node) {
        state.pendingPresses.delete(result.callback_query_id);
        node.classList.remove("pending");
      }
    }, 10000);
  } catch (error) {
    node.classList.remove("pending");
    showToast(t("could_not_press", { error: error.message }));
  }
}

function renderReplyKeyboard(markup) {
  const box = $("reply-keyboard");
  const input = $("message-input");
  if (!markup || !Array.isArray(markup.keyboard) || !markup.keyboard.length) {
    input.placeholder = t("message");
    if (!box.hidden) {
      box.hidden = true;
      keepAtBottom($("messages"));
    }
    box.replaceChildren();
    return;
  }
  const fragment = document.createDocumentFragment();
  for (const buttons of markup.keyboard) {
    const row = el("div", "reply-row");
    for (const button of buttons) {
      const label = typeof button === "string" ? button : button.text;
      const node = el("button", "reply-button", label);
      node.type = "button";
      node.dataset.testid = "reply-button";
      node.dataset.text = label;
      if (button.request_contact) {
        node.classList.add("special");
        node.dataset.requestContact = "true";
        node.title = t("shares_phone");
      }
      node.addEventListener("click", () => pressReply(label));
      row.append(node);
    }
    fragment.append(row);
  }
  box.replaceChildren(fragment);
  box.hidden = false;
  input.placeholder = markup.input_field_placeholder || t("message");
  keepAtBottom($("messages"));
}

async function pressReply(text) {
  if (!state.identity) return;
  $("messages").dataset.stick = "true"; // like sending: follow the answer
  try {
    await api("reply-press", { body: { user_id: state.identity.id, text, strict: false } });
  } catch (error) {
    showToast(error.message);
  }
}

// ------------------------------------------------------------------------------- private chat

function privateEmpty() {
  const box = el("div", "empty");
  box.dataset.testid = "empty-chat";
  box.append(el("div", "", t("no_messages")));
  const start = el("button", "", t("start"));
  start.type = "button";
  start.dataset.testid = "start-button";
  start.addEventListener("click", () => sendPrivateText("/start"));
  box.append(start);
  return box;
}

async function refreshPrivate(forceScroll) {
  if (!state.identity) return;
  const data = await api(`transcript?chat_id=${state.identity.id}`);
  renderMessages($("messages"), data.messages, {
    view: "private",
    showSender: false,
    allowReply: true,
    forceScroll,
    empty: privateEmpty,
  });
  renderReplyKeyboard(data.reply_keyboard);
}

async function sendPrivateText(text) {
  if (!state.identity || !text.trim()) return;
  if (state.editing.private) return saveEdit("private", text);
  const body = { user_id: state.identity.id, text };
  if (state.replyTo.private) body.reply_to_message_id = state.replyTo.private.message_id;
  setReplyTo("private", null);
  try {
    await api("messages", { body });
    await refreshPrivate(true);
  } catch (error) {
    showToast(error.message);
  }
}

async function sendAttachment(file) {
  if (!state.identity || !file) return;
  const data = await new Promise((resolve, reject) => {
    const reader = new FileReader();
    reader.onload = () => resolve(String(reader.result).split(",", 2)[1] || "");
    reader.onerror = () => reject(reader.error);
    reader.readAsDataURL(file);
  });
  const caption = $("message-input").value.trim();
  const isImage = /^image\/(png|jpeg|gif|webp|bmp)$/.test(file.type);
  const body = { user_id: state.identity.id };
  if (caption) body.caption = caption;
  if (isImage) body.photo = { data_b64: data };
  else body.document = { data_b64: data, file_name: file.name, mime_type: file.type || undefined };
  try {
    await api("messages", { body });
    $("message-input").value = "";
    await refreshPrivate(true);
  } catch (error) {
    showToast(error.message);
  }
}

// ------------------------------------------------------------------------------- staff group

function staffGroupId() {
  const group = state.config.staff_group;
  return group ? group.id : null;
}

async function refreshGroup(forceScroll) {
  const chatId = staffGroupId();
  if (chatId === null || !state.identity) return;
  const data = await api(`transcript?chat_id=${chatId}`);
  state.groupData = data;
  $("group-title").textContent = data.chat.title || t("tab_group");
  const topics = data.topics.filter((t) => !t.deleted);
  if (state.thread && !topics.some((t) => t.message_thread_id === state.thread)) state.thread = 0;
  renderTopics(topics, data.messages);
  const inThread = data.messages.filter((m) => (m.thread_id || 0) === state.thread);
  state.seenCounts[state.thread] = inThread.filter((m) => !m.deleted).length;
  const topic = topics.find((t) => t.message_thread_id === state.thread);
  $("topic-title").textContent = topic ? topic.name : t("general");
  $("group-status").textContent = topic ? (topic.closed ? t("topic_closed") : t("topic")) : data.chat.title || "";
  const avatar = $("topic-avatar");
  avatar.replaceChildren(topicIcon(topic ? topic.name : null));
  avatar.style.background = topic ? TOPIC_COLORS[topic.icon_color] || "#6fb9f0" : "";
  renderMessages($("topic-messages"), inThread, {
    view: "group",
    showSender: true,
    allowReply: true,
    forceScroll,
    empty: () => el("div", "empty", t("no_topic_messages")),
  });
}

// A topic's icon: the initials of the member's name (topics are named "MEMBERNO · Name"), or a neutral
// speech bubble. Never a digit: a number in a round badge reads as an unread count.
function topicInitials(name) {
  const text = String(name || "");
  const person = text.includes("·") ? text.slice(text.indexOf("·") + 1) : text;
  const words = person.split(/\s+/).map((w) => (w.match(/\p{L}/u) || [""])[0]).filter(Boolean);
  return words.slice(0, 2).join("").toUpperCase();
}

function topicIcon(name) {
  const initials = name ? topicInitials(name) : "";
  if (initials) return document.createTextNode(initials);
  const svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
  svg.setAttribute("viewBox", "0 0 24 24");
  svg.setAttribute("width", "16");
  svg.setAttribute("height", "16");
  svg.setAttribute("aria-hidden", "true");
  const path = document.createElementNS("http://www.w3.org/2000/svg", "path");
  path.setAttribute("fill", "currentColor");
  path.setAttribute("d", name === null ? "M4 9h16v2H4zm0 4h16v2H4zM9 3h2v18H9zm4 0h2v18h-2z"
    : "M4 4h16a2 2 0 0 1 2 2v10a2 2 0 0 1-2 2H9l-5 4v-4a2 2 0 0 1-2-2V6a2 2 0 0 1 2-2z");
  svg.append(path);
  return svg;
}

function renderTopics(topics, messages) {
  const list = $("topic-list");
  const fragment = document.createDocumentFragment();
  const items = [{ message_thread_id: 0, name: t("general"), icon_color: 7322096 }, ...topics];
  for (const topic of items) {
    const thread = topic.message_thread_id;
    const inThread = messages.filter((m) => (m.thread_id || 0) === thread && !m.deleted);
    const last = inThread.filter((m) => m.kind !== "service").pop();
    const li = el("li", `topic-item${thread === state.thread ? " active" : ""}${topic.closed ? " closed" : ""}`);
    li.dataset.testid = "topic-item";
    li.dataset.threadId = String(thread);
    li.tabIndex = 0;
    li.setAttribute("role", "button");
    const icon = el("div", "topic-icon");
    icon.dataset.testid = "topic-icon";
    icon.setAttribute("aria-hidden", "true");
    icon.append(topicIcon(thread ? topic.name : null));
    icon.style.background = TOPIC_COLORS[topic.icon_color] || "#6fb9f0";
    const body = el("div", "topic-body");
    const name = el("div", "topic-name", topic.name);
    if (topic.closed) name.append(el("span", "topic-closed", ` 🔒 ${t("closed")}`));
    body.append(name, el("div", "topic-last", last ? `${senderName(last)}: ${snippet(last)}` : ""));
    li.append(icon, body);
    const seen = state.seenCounts[thread];
    if (seen !== undefined && inThread.length > seen && thread !== state.thread) {
      li.append(el("span", "unread", String(inThread.length - seen)));
    } else if (seen === undefined) {
      state.seenCounts[thread] = inThread.length;
    }
    const select = () => {
      state.thread = thread;
      setReplyTo("group", null);
      refreshGroup(true);
    };
    li.addEventListener("click", select);
    li.addEventListener("keydown", (event) => {
      if (event.key === "Enter" || event.key === " ") select();
    });
    fragment.append(li);
  }
  list.replaceChildren(fragment);
}

async function sendTopicText(text) {
  const chatId = staffGroupId();
  if (chatId === null || !state.identity || !text.trim()) return;
  if (state.editing.group) return saveEdit("group", text);
  const body = { user_id: state.identity.id, chat_id: chatId, text };
  if (state.thread) body.thread_id = state.thread;
  if (state.replyTo.group) body.reply_to_message_id = state.replyTo.group.message_id;
  setReplyTo("group", null);
  try {
    await api("messages", { body });
    await refreshGroup(true);
  } catch (error) {
    showToast(error.message);
  }
}

// ------------------------------------------------------------------------------- replies

function setReplyTo(view, entry) {
  state.replyTo[view] = entry;
  if (entry) state.editing[view] = null;
  const bar = $(view === "private" ? "reply-bar" : "topic-reply-bar");
  const text = $(view === "private" ? "reply-bar-text" : "topic-reply-bar-text");
  const cancel = $(view === "private" ? "reply-cancel" : "topic-reply-cancel");
  if (!entry) {
    if (!state.editing[view]) bar.hidden = true;
    return;
  }
  text.textContent = t("replying_to", { name: senderName(entry), text: snippet(entry) });
  cancel.setAttribute("aria-label", t("cancel_reply"));
  bar.hidden = false;
  $(view === "private" ? "message-input" : "topic-input").focus();
}

// Editing one's own message, as Telegram allows: the composer takes its text, Send saves it, and the bot
// gets an edited_message update.
function startEditing(view, entry) {
  state.replyTo[view] = null;
  state.editing[view] = entry;
  const bar = $(view === "private" ? "reply-bar" : "topic-reply-bar");
  const input = $(view === "private" ? "message-input" : "topic-input");
  $(view === "private" ? "reply-bar-text" : "topic-reply-bar-text").textContent = t("editing", { text: snippet(entry) });
  $(view === "private" ? "reply-cancel" : "topic-reply-cancel").setAttribute("aria-label", t("cancel_edit"));
  bar.hidden = false;
  input.value = (entry.message && entry.message.text) || "";
  input.dataset.editing = "true";
  input.focus();
}

function stopEditing(view) {
  state.editing[view] = null;
  delete $(view === "private" ? "message-input" : "topic-input").dataset.editing;
  if (!state.replyTo[view]) $(view === "private" ? "reply-bar" : "topic-reply-bar").hidden = true;
}

async function saveEdit(view, text) {
  const entry = state.editing[view];
  stopEditing(view);
  try {
    await api("edit", { body: { user_id: state.identity.id, chat_id: entry.chat_id, message_id: entry.message_id, text } });
    await (view === "private" ? refreshPrivate(false) : refreshGroup(false));
  } catch (error) {
    showToast(error.message);
  }
}

// ------------------------------------------------------------------------------- identities

function fillPicker() {
  const picker = $("identity-picker");
  const groups = { member: [], staff: [] };
  for (const identity of state.config.identities) (groups[identity.role] || groups.member).push(identity);
  const fragment = document.createDocumentFragment();
  for (const [role, label] of [["member", t("members")], ["staff", t("staff")]]) {
    if (!groups[role].length) continue;
    const group = el("optgroup");
    group.label = label;
    for (const identity of groups[role]) {
      const option = el("option", "", identity.label || identity.first_name);
      option.value = String(identity.id);
      option.dataset.testid = "identity-option";
      option.dataset.role = identity.role || "member";
      group.append(option);
    }
    fragment.append(group);
  }
  picker.replaceChildren(fragment);
  if (state.identity) picker.value = String(state.identity.id);
}

async function loadConfig() {
  state.config = await api("demo-config");
  const bot = state.config.bot;
  $("bot-name").textContent = bot ? bot.first_name : t("bot_waiting");
  $("private-status").textContent = bot ? `@${bot.username}` : t("bot_waiting_status");
  timeFormat = null;
  fillPicker();
  fillConsoleInfo();
}

function fillConsoleInfo() {
  const info = state.config.info || {};
  const link = $("console-link");
  if (info.console) {
    link.href = info.console;
    link.textContent = info.console;
    link.hidden = false;
    $("console-credentials").textContent = t("console_line", { user: info.user || "operator", password: info.password || "" });
  } else {
    link.hidden = true;
    $("console-credentials").textContent = t("console_off");
  }
}

async function selectIdentity(id) {
  const identity = state.config.identities.find((i) => i.id === id) || state.config.identities[0];
  if (!identity) return;
  state.identity = identity;
  applyLanguage(identity.language_code);
  fillPicker();
  fillConsoleInfo();
  localStorage.setItem(STORAGE_KEY, String(identity.id));
  $("identity-picker").value = String(identity.id);
  const user = { id: identity.id, first_name: identity.first_name, language_code: identity.language_code };
  for (const key of ["last_name", "username", "phone_number"]) if (identity[key]) user[key] = identity[key];
  await api("users", { body: user });
  const isStaff = identity.role === "staff" && staffGroupId() !== null;
  $("tabs").hidden = !isStaff;
  stopEditing("private");
  stopEditing("group");
  setReplyTo("private", null);
  setReplyTo("group", null);
  showView(isStaff ? state.view : "private");
  await refreshPrivate(true);
  if (isStaff) await refreshGroup(true);
}

function showView(view) {
  state.view = view;
  $("private-view").hidden = view !== "private";
  $("group-view").hidden = view !== "group";
  for (const tab of document.querySelectorAll(".tab")) tab.classList.toggle("active", tab.dataset.view === view);
  if (view === "group") refreshGroup(true);
}

async function createIdentity(name, language) {
  const code = (language || "en").trim() || "en";
  const identity = await api("demo-config/identities", {
    body: { first_name: name.trim(), language_code: code, label: `${name.trim()} (${code})`, role: "member" },
  });
  await loadConfig();
  await selectIdentity(identity.id);
}

// ------------------------------------------------------------------------------- live updates

function refreshSoon(kind) {
  // Coalesce bursts of events into one fetch at a time per view.
  if (state.refreshing[kind]) {
    state.again[kind] = true;
    return;
  }
  state.refreshing[kind] = true;
  const run = kind === "private" ? refreshPrivate : refreshGroup;
  run(false)
    .catch(() => {})
    .finally(() => {
      state.refreshing[kind] = false;
      if (state.again[kind]) {
        state.again[kind] = false;
        refreshSoon(kind);
      }
    });
}

let typingTimers = {};
function showTyping(kind) {
  const status = $(kind === "private" ? "private-status" : "group-status");
  if (!status.dataset.idle) status.dataset.idle = status.textContent;
  status.textContent = t("typing");
  status.classList.add("typing");
  clearTimeout(typingTimers[kind]);
  typingTimers[kind] = setTimeout(() => {
    status.textContent = status.dataset.idle;
    delete status.dataset.idle;
    status.classList.remove("typing");
  }, 4000);
}

function handleEvents(events) {
  const me = state.identity ? state.identity.id : null;
  const group = staffGroupId();
  let reloadConfig = false;
  for (const event of events) {
    if (event.type === "reset" || event.type === "demo_config") reloadConfig = true;
    if (event.type === "call" && !state.config.bot) reloadConfig = true;
    if (event.chat_id === undefined || event.chat_id === null) continue;
    if (event.chat_id === me) {
      if (event.type === "chat_action") showTyping("private");
      else refreshSoon("private");
    } else if (event.chat_id === group && state.identity && state.identity.role === "staff") {
      if (event.type === "chat_action") {
        if ((event.thread_id || 0) === state.thread) showTyping("group");
      } else refreshSoon("group");
    }
    if (event.type === "callback_answer") {
      const node = state.pendingPresses.get(event.callback_query_id);
      if (node) {
        node.classList.remove("pending");
        state.pendingPresses.delete(event.callback_query_id);
        if (event.text) {
          if (event.show_alert) showAlert(event.text);
          else showToast(event.text);
        }
      }
    }
  }
  if (reloadConfig) {
    loadConfig()
      .then(() => selectIdentity(state.identity ? state.identity.id : null))
      .catch(() => {});
  }
}

async function pollEvents() {
  for (;;) {
    try {
      const result = await api(`events?since=${state.seq}&timeout=25`);
      $("offline").hidden = true;
      state.seq = result.seq;
      if (result.gap || result.instance !== state.instance) {
        // Events were missed, or the demo restarted: reload what the page shows.
        state.instance = result.instance;
        handleEvents([{ type: "reset" }]);
        continue;
      }
      if (result.events.length) handleEvents(result.events);
    } catch (error) {
      $("offline").hidden = false;
      await sleep(1500);
    }
  }
}

// ------------------------------------------------------------------------------- overlays

let toastTimer = null;
function showToast(text) {
  const toast = $("toast");
  toast.textContent = text;
  toast.hidden = false;
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => {
    toast.hidden = true;
  }, 3500);
}

function showAlert(text) {
  $("alert-text").textContent = text;
  $("alert").hidden = false;
  $("alert-ok").focus();
}

// ------------------------------------------------------------------------------- wiring

function wire() {
  $("identity-picker").addEventListener("change", (event) => selectIdentity(Number(event.target.value)));
  $("new-identity-toggle").addEventListener("click", () => {
    const form = $("new-identity");
    form.hidden = !form.hidden;
    if (!form.hidden) $("new-identity-name").focus();
  });
  $("new-identity-cancel").addEventListener("click", () => {
    $("new-identity").hidden = true;
  });
  $("new-identity").addEventListener("submit", async (event) => {
    event.preventDefault();
    const name = $("new-identity-name").value;
    if (!name.trim()) return;
    try {
      await createIdentity(name, $("new-identity-lang").value);
      $("new-identity").hidden = true;
      $("new-identity-name").value = "";
    } catch (error) {
      showToast(error.message);
    }
  });
  $("composer").addEventListener("submit", (event) => {
    event.preventDefault();
    const input = $("message-input");
    const text = input.value;
    input.value = "";
    sendPrivateText(text);
  });
  $("topic-composer").addEventListener("submit", (event) => {
    event.preventDefault();
    const input = $("topic-input");
    const text = input.value;
    input.value = "";
    sendTopicText(text);
  });
  $("attach").addEventListener("change", (event) => {
    const file = event.target.files && event.target.files[0];
    event.target.value = "";
    sendAttachment(file).catch((error) => showToast(error.message));
  });
  $("reply-cancel").addEventListener("click", () => {
    if (state.editing.private) $("message-input").value = "";
    stopEditing("private");
    setReplyTo("private", null);
  });
  $("topic-reply-cancel").addEventListener("click", () => {
    if (state.editing.group) $("topic-input").value = "";
    stopEditing("group");
    setReplyTo("group", null);
  });
  $("console-toggle").addEventListener("click", () => {
    $("console-info").hidden = !$("console-info").hidden;
  });
  $("console-close").addEventListener("click", () => {
    $("console-info").hidden = true;
  });
  $("alert-ok").addEventListener("click", () => {
    $("alert").hidden = true;
  });
  for (const tab of document.querySelectorAll(".tab")) {
    tab.addEventListener("click", () => showView(tab.dataset.view));
  }
  document.addEventListener("keydown", (event) => {
    if (event.key === "Escape") $("alert").hidden = true;
  });
}

async function main() {
  wire();
  followNewest($("messages"));
  followNewest($("topic-messages"));
  for (;;) {
    try {
      const feed = await api("events?since=-1");
      state.seq = feed.seq;
      state.instance = feed.instance;
      await loadConfig();
      break;
    } catch (error) {
      $("offline").hidden = false;
      await sleep(1500);
    }
  }
  $("offline").hidden = true;
  const saved = Number(localStorage.getItem(STORAGE_KEY));
  await selectIdentity(saved || (state.config.identities[0] && state.config.identities[0].id));
  pollEvents();
}

main();
