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
    span.title = "Spoiler: click to reveal";
    span.addEventListener("click", () => span.classList.toggle("revealed"));
  } else if (entity.type === "bot_command") {
    span.className = "cmd";
    span.title = "Send this command";
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

function timeOf(unix) {
  const date = new Date(unix * 1000);
  return date.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
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
  if (message.photo) return "🖼 Photo";
  if (message.document) return `📄 ${message.document.file_name || "File"}`;
  if (message.contact) return `👤 ${message.contact.first_name || "Contact"}`;
  if (message.sticker) return "Sticker";
  if (message.voice) return "🎤 Voice message";
  if (message.video) return "🎬 Video";
  if (message.location) return "📍 Location";
  return serviceText(message) || "Message";
}

function serviceText(message) {
  if (message.forum_topic_created) return `Topic “${message.forum_topic_created.name}” created`;
  if (message.forum_topic_edited) {
    return message.forum_topic_edited.name ? `Topic renamed to “${message.forum_topic_edited.name}”` : "Topic edited";
  }
  if (message.forum_topic_closed) return "Topic closed";
  if (message.forum_topic_reopened) return "Topic reopened";
  if (message.new_chat_members) return "New members joined";
  return "";
}

// ------------------------------------------------------------------------------- messages

// A chat sticks to its newest message unless the person scrolled up to read: the flag is kept per list and
// re-applied when images finish loading or the list is resized (e.g. a reply keyboard appears).
function isNearBottom(container) {
  return container.scrollHeight - container.scrollTop - container.clientHeight < 80;
}

function keepAtBottom(container) {
  if (container && container.dataset.stick !== "false") container.scrollTop = container.scrollHeight;
}

function followNewest(container) {
  container.addEventListener("scroll", () => { container.dataset.stick = String(isNearBottom(container)); });
  if (window.ResizeObserver) new ResizeObserver(() => keepAtBottom(container)).observe(container);
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
    const sender = el("div", "sender", senderName(entry) + (entry.direction === "bot" ? " · bot" : ""));
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
    const who = origin.sender_user ? origin.sender_user.first_name : origin.sender_user_name || "someone";
    bubble.append(el("div", "sender", `Forwarded from ${who}`));
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
    const replyButton = el("button", "reply-link", "↩ reply");
    replyButton.type = "button";
    replyButton.dataset.testid = "reply-to-button";
    replyButton.addEventListener("click", () => setReplyTo(options.view, entry));
    meta.append(replyButton);
  }
  if (entry.edited) meta.append(el("span", "edited", "edited"));
  meta.append(el("span", "time", timeOf(entry.date)));
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
    link.append(el("div", "doc-icon", "📄"), info);
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
    card.append(el("div", "avatar", "👤"), info);
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
            showToast("Copied");
          });
        } else {
          node.disabled = true;
          node.title = "Not available in the demo";
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
    showToast(`Could not press: ${error.message}`);
  }
}

function renderReplyKeyboard(markup) {
  const box = $("reply-keyboard");
  const input = $("message-input");
  if (!markup || !Array.isArray(markup.keyboard) || !markup.keyboard.length) {
    box.hidden = true;
    box.replaceChildren();
    input.placeholder = "Message";
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
        node.title = "Shares your own phone number";
      }
      node.addEventListener("click", () => pressReply(label));
      row.append(node);
    }
    fragment.append(row);
  }
  box.replaceChildren(fragment);
  box.hidden = false;
  input.placeholder = markup.input_field_placeholder || "Message";
}

async function pressReply(text) {
  if (!state.identity) return;
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
  box.append(el("div", "", "No messages yet. Say hello to the bot!"));
  const start = el("button", "", "Start");
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
  $("group-title").textContent = data.chat.title || "Staff group";
  const topics = data.topics.filter((t) => !t.deleted);
  if (state.thread && !topics.some((t) => t.message_thread_id === state.thread)) state.thread = 0;
  renderTopics(topics, data.messages);
  const inThread = data.messages.filter((m) => (m.thread_id || 0) === state.thread);
  state.seenCounts[state.thread] = inThread.filter((m) => !m.deleted).length;
  const topic = topics.find((t) => t.message_thread_id === state.thread);
  $("topic-title").textContent = topic ? topic.name : "General";
  $("group-status").textContent = topic ? (topic.closed ? "topic · closed" : "topic") : data.chat.title || "";
  const avatar = $("topic-avatar");
  avatar.textContent = topic ? topic.name.slice(0, 1).toUpperCase() : "#";
  avatar.style.background = topic ? TOPIC_COLORS[topic.icon_color] || "#6fb9f0" : "";
  renderMessages($("topic-messages"), inThread, {
    view: "group",
    showSender: true,
    allowReply: true,
    forceScroll,
    empty: () => el("div", "empty", "No messages in this topic yet."),
  });
}

function renderTopics(topics, messages) {
  const list = $("topic-list");
  const fragment = document.createDocumentFragment();
  const items = [{ message_thread_id: 0, name: "General", icon_color: 7322096 }, ...topics];
  for (const topic of items) {
    const thread = topic.message_thread_id;
    const inThread = messages.filter((m) => (m.thread_id || 0) === thread && !m.deleted);
    const last = inThread.filter((m) => m.kind !== "service").pop();
    const li = el("li", `topic-item${thread === state.thread ? " active" : ""}${topic.closed ? " closed" : ""}`);
    li.dataset.testid = "topic-item";
    li.dataset.threadId = String(thread);
    li.tabIndex = 0;
    li.setAttribute("role", "button");
    const icon = el("div", "topic-icon", thread ? topic.name.slice(0, 1).toUpperCase() : "#");
    icon.style.background = TOPIC_COLORS[topic.icon_color] || "#6fb9f0";
    const body = el("div", "topic-body");
    body.append(el("div", "topic-name", topic.name), el("div", "topic-last", last ? `${senderName(last)}: ${snippet(last)}` : ""));
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
  const bar = $(view === "private" ? "reply-bar" : "topic-reply-bar");
  const text = $(view === "private" ? "reply-bar-text" : "topic-reply-bar-text");
  if (!entry) {
    bar.hidden = true;
    return;
  }
  text.textContent = `Replying to ${senderName(entry)}: ${snippet(entry)}`;
  bar.hidden = false;
  $(view === "private" ? "message-input" : "topic-input").focus();
}

// ------------------------------------------------------------------------------- identities

function fillPicker() {
  const picker = $("identity-picker");
  const groups = { member: [], staff: [] };
  for (const identity of state.config.identities) (groups[identity.role] || groups.member).push(identity);
  const fragment = document.createDocumentFragment();
  for (const [role, label] of [["member", "Members"], ["staff", "Staff"]]) {
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
  $("bot-name").textContent = bot ? bot.first_name : "Bot (not connected yet)";
  $("private-status").textContent = bot ? `@${bot.username}` : "waiting for the bot to connect";
  fillPicker();
}

async function selectIdentity(id) {
  const identity = state.config.identities.find((i) => i.id === id) || state.config.identities[0];
  if (!identity) return;
  state.identity = identity;
  localStorage.setItem(STORAGE_KEY, String(identity.id));
  $("identity-picker").value = String(identity.id);
  const user = { id: identity.id, first_name: identity.first_name, language_code: identity.language_code };
  for (const key of ["last_name", "username", "phone_number"]) if (identity[key]) user[key] = identity[key];
  await api("users", { body: user });
  const isStaff = identity.role === "staff" && staffGroupId() !== null;
  $("tabs").hidden = !isStaff;
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
  status.textContent = "typing…";
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
      if (result.gap) {
        refreshSoon("private");
        refreshSoon("group");
      }
      state.seq = result.seq;
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
  $("reply-cancel").addEventListener("click", () => setReplyTo("private", null));
  $("topic-reply-cancel").addEventListener("click", () => setReplyTo("group", null));
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
