/**
 * The sealpost chat page: this browser as one device (its stores in IndexedDB), created as a
 * new account or linked to an existing one; 1:1 and group conversations with text and files,
 * receipts and read state, typing, the safety number and a warning when a contact's keys
 * change, and an offline banner (mail queues and goes out when the connection is back).
 * Plain DOM: the SDK does all the work.
 */
import {
  Messenger,
  MessengerGroups,
  conversationGroupId,
  directConversation,
  directPeer,
  groupConversation,
  openIndexedDbStores,
  type ConversationKey,
  type IndexedDbStores,
  type MessengerEvent,
  type StoredMessage,
} from "@sealpost/client/web";
import { renderSVG } from "uqr";

/** One device per browser profile: its whole state lives in this database. */
const DB_NAME = "sealpost-device";

const $ = <T extends HTMLElement = HTMLElement>(id: string) => document.getElementById(id) as T;
const params = new URLSearchParams(location.search);
const serverUrl = () => ($<HTMLInputElement>("server").value || "http://localhost:8080").replace(/\/$/, "");

let m: Messenger;
let groups: MessengerGroups;
let current: ConversationKey | undefined;
const unread = new Map<ConversationKey, number>();
const keyWarnings = new Set<string>();
const typingFrom = new Map<ConversationKey, string>();
/** Offline as the receive stream found it, or as the browser knows it (an open stream can outlive the network). */
let streamOffline = false;
const showConnection = () => ($("offline").hidden = navigator.onLine && !streamOffline);
addEventListener("online", showConnection);
addEventListener("offline", showConnection);

async function boot(): Promise<void> {
  $<HTMLInputElement>("server").value = params.get("server") ?? localStorage.getItem("sealpost.server") ?? "http://localhost:8080";
  const stores = await openIndexedDbStores(DB_NAME);
  try {
    await run(await Messenger.open({ serverUrl: serverUrl(), ...stores }), stores);
  } catch (err) {
    if ((err as { code?: string }).code !== "not_initialized") throw err;
    showSetup(stores);
  }
}

function showSetup(stores: IndexedDbStores): void {
  $("setup").hidden = false;
  const fail = (err: unknown) => ($("setup-error").textContent = err instanceof Error ? err.message : String(err));
  const opts = () => {
    localStorage.setItem("sealpost.server", serverUrl());
    return {
      serverUrl: serverUrl(),
      accountId: $<HTMLInputElement>("account").value.trim(),
      deviceName: $<HTMLInputElement>("device").value.trim() || "browser",
      ...stores,
    };
  };
  $("create").onclick = () => Messenger.createAccount(opts()).then((x) => run(x, stores), fail);
  $("link").onclick = async () => {
    try {
      const pending = await Messenger.startLink(opts());
      $("linkbox").hidden = false;
      $<HTMLTextAreaElement>("linkcode").value = pending.code;
      $("qr").innerHTML = renderSVG(pending.code);
      await run(await pending.complete({ timeoutMs: pending.validForMs }), stores);
    } catch (err) {
      fail(err);
    }
  };
}

async function run(messenger: Messenger, stores: IndexedDbStores): Promise<void> {
  m = messenger;
  groups = MessengerGroups.attach(m, stores.groups);
  $("setup").hidden = true;
  $("chat").hidden = false;
  $("me").textContent = `${m.accountId} · device ${m.address.deviceId}`;
  m.on((e) => void onEvent(e));
  groups.on(() => void renderConversations());
  m.start();
  wireForms();
  wireSealedAccess();
  await renderConversations();
  (globalThis as { sealpostReady?: boolean }).sealpostReady = true;
}

async function onEvent(e: MessengerEvent): Promise<void> {
  switch (e.type) {
    case "connection":
      streamOffline = e.state === "offline";
      showConnection();
      break;
    case "history-transfer":
      // History from another device of this account (after linking): show it as it lands.
      if (e.role === "receiver" && (e.phase === "importing" || e.phase === "done")) {
        $("history").hidden = e.phase === "done";
        $("history").textContent = `importing history from your other device: ${e.done}/${e.total}`;
        await renderConversations();
        if (current) await renderMessages();
      }
      break;
    case "stopped":
    case "device-revoked": {
      // Another tab of this profile took over the device's mailbox stream, or the device was
      // revoked: this tab no longer receives, and says so instead of looking connected.
      if (e.type === "device-revoked" && !e.self) break;
      const banner = $("stopped");
      banner.textContent =
        e.type === "device-revoked"
          ? "this device was removed from the account"
          : e.reason === "replaced"
            ? "this device is open in another tab: receiving stopped here (reload to take it back)"
            : `receiving stopped: ${e.detail}`;
      banner.hidden = false;
      break;
    }
    case "message":
      if (e.message.conversation !== current && !e.message.outgoing) unread.set(e.message.conversation, (unread.get(e.message.conversation) ?? 0) + 1);
      typingFrom.delete(e.message.conversation);
      await renderConversations();
      if (e.message.conversation === current) await renderMessages();
      break;
    case "receipt":
    case "sent":
    case "send-failed":
    case "read-sync":
      if (current) await renderMessages();
      break;
    case "typing":
      if (e.started) typingFrom.set(e.conversation, e.from.accountId);
      else typingFrom.delete(e.conversation);
      if (e.conversation === current) renderTyping();
      break;
    case "key-change":
      keyWarnings.add(e.accountId);
      if (current && directPeer(current) === e.accountId) await renderHeader();
      break;
    case "directory-untrusted": {
      // A device list the directory could not prove (broken chain, or the key transparency
      // log shows the server telling people different things): said, never hidden.
      const banner = $("untrusted");
      banner.textContent = `warning: ${e.accountId}'s devices could not be verified (${e.problem}): ${e.detail}`;
      banner.hidden = false;
      break;
    }
  }
}

/** Who may send this device sealed mail (contacts, anyone, nobody) and a new access key on request. */
function wireSealedAccess(): void {
  const select = $<HTMLSelectElement>("sealed-mode");
  const show = () => {
    const a = m.sealedAccess();
    select.value = a.mode;
    $("sealed-state").textContent = a.registered ? "" : "(not confirmed by the server yet)";
  };
  const apply = (p: Promise<void>) =>
    p.then(show, (err: unknown) => ($("sealed-state").textContent = `not changed: ${err instanceof Error ? err.message : String(err)}`));
  select.onchange = () => apply(m.setSealedAccess(select.value as "off" | "contacts" | "anyone"));
  $("sealed-rotate").onclick = () => apply(m.rotateAccessKey());
  $("sealed-access").hidden = false;
  show();
}

function wireForms(): void {
  $<HTMLFormElement>("new-chat").onsubmit = async (ev) => {
    ev.preventDefault();
    const input = (ev.target as HTMLFormElement).elements.namedItem("peer") as HTMLInputElement;
    const peer = input.value.trim();
    if (!peer) return;
    input.value = "";
    await open(directConversation(peer));
  };
  $<HTMLFormElement>("new-group").onsubmit = async (ev) => {
    ev.preventDefault();
    const f = ev.target as HTMLFormElement;
    const title = (f.elements.namedItem("title") as HTMLInputElement).value.trim() || "group";
    const members = (f.elements.namedItem("members") as HTMLInputElement).value
      .split(",")
      .map((x) => x.trim())
      .filter(Boolean);
    const g = await groups.createGroup(title, members);
    f.reset();
    await open(groupConversation(g.groupId));
  };
  $<HTMLFormElement>("members").onsubmit = (ev) => ev.preventDefault();
  for (const action of ["add", "remove"] as const) {
    ($<HTMLFormElement>("members").elements.namedItem(action) as HTMLButtonElement).onclick = async () => {
      const input = $<HTMLFormElement>("members").elements.namedItem("member") as HTMLInputElement;
      const gid = groupIdOf(current);
      if (!gid || !input.value.trim()) return;
      if (action === "add") await groups.addMembers(gid, [input.value.trim()]);
      else await groups.removeMember(gid, input.value.trim());
      input.value = "";
      await renderHeader();
    };
  }
  const compose = $<HTMLFormElement>("compose");
  const text = compose.elements.namedItem("text") as HTMLInputElement;
  let typing = false;
  text.oninput = () => {
    const peer = current && directPeer(current);
    if (peer && typing !== text.value.length > 0) void m.setTyping(peer, (typing = text.value.length > 0));
  };
  compose.onsubmit = async (ev) => {
    ev.preventDefault();
    if (!current) return;
    const file = (compose.elements.namedItem("file") as HTMLInputElement).files?.[0];
    const body = text.value;
    compose.reset();
    typing = false;
    if (file) await sendFile(file, body);
    else if (body.trim()) await sendText(body);
    await renderMessages();
  };
}

async function sendText(body: string): Promise<void> {
  const gid = groupIdOf(current);
  if (gid) await groups.sendText(gid, body);
  else await m.sendText(directPeer(current!)!, body);
  // A first message to a new contact: watch their device list too (key-change warnings).
  if (!gid) await m.refreshWatch();
}

async function sendFile(file: File, caption: string): Promise<void> {
  const progress = $<HTMLProgressElement>("progress");
  progress.hidden = false;
  const meta = {
    contentType: file.type || "application/octet-stream",
    fileName: file.name,
    caption,
    onProgress: (done: number, total: number) => (progress.value = done / total),
  };
  const data = new Uint8Array(await file.arrayBuffer());
  try {
    const gid = groupIdOf(current);
    if (gid) await groups.sendFile(gid, data, meta);
    else await m.sendFile(directPeer(current!)!, data, meta);
    if (!gid) await m.refreshWatch();
  } finally {
    progress.hidden = true;
    progress.value = 0;
  }
}

async function open(conversation: ConversationKey): Promise<void> {
  current = conversation;
  unread.delete(conversation);
  $("conversation").hidden = false;
  await renderConversations();
  await renderHeader();
  await renderMessages();
}

async function renderConversations(): Promise<void> {
  const keys = new Set(await m.conversations());
  if (current) keys.add(current);
  const list = $("conversations");
  list.replaceChildren();
  for (const key of [...keys].sort()) {
    const li = document.createElement("li");
    li.textContent = await titleOf(key);
    li.dataset.conversation = key;
    if (key === current) li.className = "current";
    const n = unread.get(key);
    if (n) li.insertAdjacentHTML("beforeend", `<span class="unread">${n}</span>`);
    li.onclick = () => void open(key);
    list.append(li);
  }
}

async function titleOf(key: ConversationKey): Promise<string> {
  const gid = groupIdOf(key);
  if (!gid) return directPeer(key) ?? key;
  const info = await groups.info(gid);
  return info ? `${info.title} (group)` : "group";
}

async function renderHeader(): Promise<void> {
  if (!current) return;
  $("title").textContent = await titleOf(current);
  const peer = directPeer(current);
  const gid = groupIdOf(current);
  $("members").hidden = !gid;
  if (gid) {
    const info = await groups.info(gid);
    $("safety").textContent = info ? `members: ${info.members.map((x) => x.accountId + (x.admin ? " (admin)" : "")).join(", ")}` : "";
    $("key-warning").hidden = true;
    return;
  }
  $("safety").textContent = await m.safetyNumber(peer!).then(
    (n) => `safety number: ${n}`,
    () => "safety number: after the first message",
  );
  const warn = $("key-warning");
  warn.hidden = !keyWarnings.has(peer!);
  warn.textContent = `${peer}'s devices or keys changed: compare the safety number with them again.`;
}

async function renderMessages(): Promise<void> {
  if (!current) return;
  const gid = groupIdOf(current);
  const history = gid ? await groups.history(gid) : await m.history(directPeer(current)!);
  const list = $("messages");
  list.replaceChildren(...history.map(renderMessage));
  list.scrollTop = list.scrollHeight;
  renderTyping();
  if (history.some((x) => !x.outgoing && !x.read)) {
    if (gid) await groups.markRead(gid);
    else await m.markRead(directPeer(current)!);
  }
}

function renderMessage(x: StoredMessage): HTMLLIElement {
  const li = document.createElement("li");
  li.className = x.outgoing ? "mine" : "theirs";
  li.dataset.id = x.id;
  const body = document.createElement("div");
  if (x.body.kind === "text") {
    body.textContent = x.body.text;
  } else {
    const a = x.body.attachment;
    const link = document.createElement("a");
    link.href = "#";
    link.textContent = `📎 ${a.fileName || "file"} (${a.size} bytes)`;
    link.onclick = async (ev) => {
      ev.preventDefault();
      const bytes = await m.downloadAttachment(a);
      const url = URL.createObjectURL(new Blob([new Uint8Array(bytes)], { type: a.contentType }));
      Object.assign(document.createElement("a"), { href: url, download: a.fileName || "file" }).click();
    };
    body.append(link);
    if (a.caption) body.append(` ${a.caption}`);
  }
  const meta = document.createElement("div");
  meta.className = "meta";
  meta.textContent = `${x.outgoing ? "me" : x.sender.accountId} · ${new Date(x.sentAtMs).toLocaleTimeString()}${x.outgoing ? ` · ${x.status}` : ""}${x.sealed ? " · sealed" : ""}`;
  li.append(body, meta);
  return li;
}

function renderTyping(): void {
  const who = current && typingFrom.get(current);
  $("typing").textContent = who ? `${who} is typing…` : "";
}

function groupIdOf(key: ConversationKey | undefined): string | undefined {
  return key === undefined ? undefined : conversationGroupId(key);
}

boot().catch((err) => {
  $("setup").hidden = false;
  $("setup-error").textContent = `could not start: ${err instanceof Error ? err.message : String(err)}`;
});
