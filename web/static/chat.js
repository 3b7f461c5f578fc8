// Plop's web chat: queries and mutations over HTTP POST /graphql, live updates over
// one WebSocket (graphql-transport-ws, the vendored graphql-ws client). Each tab keeps
// its own session (sessionStorage), so two tabs can be two users.
//
// Live: `sync` on load gives the room list (unread counts, each room's newest
// message), the pending invitations and a token; ONE `events` subscription from that
// token then gives everything of the account after it, once and in order per room:
// messages, edits, reactions, typing, read receipts, joins, leaves and invitations.
// Each event carries the token to resume from: after a dropped socket or a server
// restart the page subscribes again from the last one and the server replays what it
// missed; a token the server no longer honours (SYNC_TOKEN_EXPIRED) means a new sync
// from scratch. Friends' presence is not an account event: presenceChanged follows
// it, and a reconnect reloads the friends and the friend requests.

const TOKEN_KEY = "plop.token";
const PAGE_SIZE = 30;
// The rooms a sync lists (the most recently active first).
const SYNC_ROOMS = 50;
// Resubscribe backoff: doubles from the first delay up to the cap, plus jitter, so
// that the clients of a restarted server do not all come back in the same instant.
const RETRY_FIRST_MS = 250;
const RETRY_MAX_MS = 4000;
// Close codes meaning the session is gone: 4401 session ended, 4403 token refused.
const SESSION_GONE_CODES = new Set([4401, 4403]);
// Why the server refuses a token that is too old or too far behind.
const TOKEN_EXPIRED = "SYNC_TOKEN_EXPIRED";
// Refusals of the events subscription about its token (expired, edited, another
// user's): the only input the page gives it, so a new sync is the way on.
const TOKEN_REFUSED_CODES = new Set(["BAD_USER_INPUT", "FORBIDDEN"]);

const USER = "id username displayName presence { status lastSeenAt }";
const REACTIONS = "reactions { emoji count reactedByViewer }";
const ATTACHMENT = "id filename contentType size url width height";
const MESSAGE = `id roomId seq text clientId createdAt editedAt deleted
  sender { id username displayName avatarUrl } attachments { ${ATTACHMENT} }
  replyTo { id seq text deleted sender { username displayName } } ${REACTIONS} mentions { id }`;
// The emoji the page offers under a message; any other one comes from others' reactions.
const QUICK_EMOJI = ["👍", "❤️", "😂", "🎉", "😮", "😢"];
// How often a user who keeps typing says so again (the server re-broadcasts at most
// every 3 s and forgets a typing after 6 s without one).
const TYPING_EVERY_MS = 2500;
// What the room list shows of a message: its preview.
const PREVIEW = "seq text deleted sender { id username displayName }";
// A room as the list shows it; its last message comes from a sync or with the room.
const LISTED_ROOM = `id kind title lastSeq unreadCount members(first: 20) { ${USER} }`;
const ROOM = `${LISTED_ROOM} lastMessage { ${PREVIEW} }`;
const INVITATION = `id createdAt room { id title memberCount } inviter { ${USER} }`;
const SYNC = `query($rooms: Int) {
  sync(rooms: $rooms, messagesPerRoom: 1) {
    rooms { room { ${LISTED_ROOM} } messages { ${PREVIEW} } }
    invitations { ${INVITATION} }
    nextToken
  }
}`;
const EVENTS = `subscription($since: String) {
  events(since: $since) {
    token
    payload {
      __typename
      ... on MessageAdded { message { ${MESSAGE} } }
      ... on MessageUpdated { message { ${MESSAGE} } }
      ... on ReactionChanged { message { roomId seq deleted ${REACTIONS} } }
      ... on TypingEvent { roomId typing user { id username displayName } }
      ... on ReadReceipt { roomId lastReadSeq user { id } }
      ... on MembersChanged { room { ${LISTED_ROOM} } }
      ... on RoomJoined { room { ${ROOM} } }
      ... on RoomLeft { roomId }
      ... on RoomInvited { invitation { ${INVITATION} } }
    }
  }
}`;
// A group's settings: who is in it, in what role, and the viewer's own.
const GROUP = `title viewerRole
  memberships(first: 100) { edges { node { role user { id username displayName } } } }`;
const ROLES = ["MEMBER", "ADMIN", "OWNER"];

const $ = (id) => document.getElementById(id);
const state = {
  token: sessionStorage.getItem(TOKEN_KEY),
  me: null,
  ws: null,
  everConnected: false,
  rooms: new Map(), // id -> room
  order: [], // room ids, most recent activity first
  // Rooms this page left whose RoomLeft has not come yet: their earlier events are
  // still on the way and must not bring them back.
  leaving: new Set(),
  fetching: new Set(), // ids of rooms not in the list being read (a message came)
  invitations: new Map(), // id -> pending group invitation
  friends: new Map(), // id -> user
  room: null, // the open room: { id, lastSeq, startCursor, hasPrevious, loading, early }
  account: null, // the events subscription: { since (the last token), stop }
  startOvers: 0, // syncs from scratch since the last event
  stopLive: [],
  pending: null, // { clientId, text } of a send not yet confirmed
  replyTo: null, // the message the next send answers
};

// ---- HTTP ------------------------------------------------------------------------

class GraphQLFailure extends Error {
  constructor(message, code) {
    super(message);
    this.code = code;
  }
}

async function gql(query, variables = {}) {
  const headers = { "Content-Type": "application/json", Accept: "application/json" };
  if (state.token) headers.Authorization = `Bearer ${state.token}`;
  let response;
  try {
    response = await fetch("/graphql", {
      method: "POST",
      headers,
      body: JSON.stringify({ query, variables }),
    });
  } catch {
    throw new GraphQLFailure("the server cannot be reached", "UNAVAILABLE");
  }
  const body = await response.json().catch(() => null);
  if (!body) throw new GraphQLFailure(`HTTP ${response.status}`, "UNAVAILABLE");
  if (body.errors?.length) {
    const [first] = body.errors;
    if (first.extensions?.code === "UNAUTHENTICATED" && state.token) signOut();
    throw new GraphQLFailure(first.message, first.extensions?.code);
  }
  return body.data;
}

// ---- live ------------------------------------------------------------------------

function openSocket() {
  const url = new URL("/graphql", window.location.href);
  url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
  state.everConnected = false;
  state.ws = graphqlWs.createClient({
    url: url.toString(),
    // Retries are ours (live() below): the library would resubscribe with the first
    // variables, and events must resume from the last token instead.
    retryAttempts: 0,
    connectionParams: () => ({ authToken: state.token }),
    on: {
      connected: () => {
        setConnection("live");
        $("room-error").textContent = "";
        if (state.everConnected) catchUp();
        state.everConnected = true;
      },
      closed: () => setConnection("reconnecting"),
    },
  });
}

function setConnection(value) {
  $("connection").dataset.state = value;
  $("connection").title = value;
}

/** Keeps one subscription running across dropped sockets; returns its stop function.
 * `refused(errors)` may take over an answer with errors (true: this one stops). */
function live(query, variables, onData, refused = () => false) {
  let stopped = false;
  let dispose = () => {};
  let attempt = 0;
  const failed = (errors) => {
    if (refused(errors)) {
      stopped = true;
      dispose();
      return;
    }
    showRoomError(errors[0]?.message ?? "failed");
  };
  const start = () => {
    if (stopped) return;
    dispose = state.ws.subscribe(
      { query, variables: variables() },
      {
        next: (result) => {
          attempt = 0;
          if (result.data) onData(result.data);
          if (result.errors) failed(result.errors);
        },
        error: (error) => {
          if (stopped) return;
          if (Array.isArray(error)) return failed(error);
          if (SESSION_GONE_CODES.has(error?.code)) return signOut();
          retry();
        },
        // These streams never end on their own: an end is a server going away.
        complete: () => {
          if (!stopped) retry();
        },
      },
    );
  };
  const retry = () => setTimeout(start, backoff(attempt++));
  start();
  return () => {
    stopped = true;
    dispose();
  };
}

/** The wait before retry number `attempt` (from 0): doubling, capped, jittered. */
function backoff(attempt) {
  return Math.min(RETRY_MAX_MS, RETRY_FIRST_MS * 2 ** attempt) + Math.random() * RETRY_FIRST_MS;
}

/** What the account's events do not carry, missed while the socket was down: the
 * friends' presence and the friend requests. Typing shown then may have ended. */
async function catchUp() {
  if (state.room) {
    state.room.typing.clear();
    renderTyping(state.room);
  }
  await Promise.all([loadFriends(), loadRequests()]).catch(showRoomError);
}

// ---- the account: one sync, then one events subscription -----------------------

/** The room list and the invitations as they stand, and the token that follows them. */
async function syncAccount() {
  const { sync } = await gql(SYNC, { rooms: SYNC_ROOMS });
  state.rooms.clear();
  state.order = [];
  for (const { room, messages } of sync.rooms) {
    room.lastMessage = messages.at(-1) ?? null;
    state.rooms.set(room.id, room);
    state.order.push(room.id);
  }
  state.invitations = new Map(sync.invitations.map((invitation) => [invitation.id, invitation]));
  renderRooms();
  renderInvitations();
  return sync.nextToken;
}

/** Follows the account from `since` on one subscription, resuming from the last
 * event's token after a dropped socket. */
function followAccount(since) {
  state.account?.stop();
  const account = { since };
  state.account = account;
  account.stop = live(
    EVENTS,
    () => ({ since: account.since }),
    (data) => {
      if (state.account !== account) return;
      accountEvent(data.events.payload);
      account.since = data.events.token;
      state.startOvers = 0;
    },
    (errors) => state.account === account && tokenRefused(errors),
  );
}

/** An expired (or otherwise refused) token: start over with a sync from scratch. */
function tokenRefused(errors) {
  const aboutToken = errors.some(
    (error) =>
      error.extensions?.reason === TOKEN_EXPIRED || TOKEN_REFUSED_CODES.has(error.extensions?.code),
  );
  if (aboutToken) startOver();
  return aboutToken;
}

/** A new sync, then the events from its token; the open room is read again if the
 * sync shows it moved on (its events in between are lost with the old token). A
 * sync that fails, or a start over that follows another with no event between
 * (a fresh token refused again), waits a backoff first. */
async function startOver() {
  state.account = null;
  for (let done = false; !done && state.token; ) {
    const again = state.startOvers++;
    if (again) await new Promise((resolve) => setTimeout(resolve, backoff(again - 1)));
    try {
      followAccount(await syncAccount());
      done = true;
    } catch (error) {
      showRoomError(error);
    }
  }
  const open = state.room;
  if (!open || !state.token) return;
  const synced = state.rooms.get(open.id);
  if (!synced) closeRoom();
  else if (synced.lastSeq > open.lastSeq) openRoom(open.id);
}

const ACCOUNT_EVENTS = {
  MessageAdded: (event) => messageArrived(event.message),
  MessageUpdated: (event) => messageUpdated(event.message),
  ReactionChanged: (event) => {
    if (state.room?.id === event.message.roomId) showReactions(event.message);
  },
  TypingEvent: typingChanged,
  ReadReceipt: receiptArrived,
  MembersChanged: (event) => membersChanged(event.room),
  RoomJoined: (event) => roomJoined(event.room),
  RoomLeft: (event) => roomLeft(event.roomId),
  RoomInvited: (event) => invited(event.invitation),
};

function accountEvent(payload) {
  ACCOUNT_EVENTS[payload.__typename]?.(payload);
}

/** A new message: the room list learns of it, and the open room shows it. */
function messageArrived(message) {
  listMessage(message);
  const open = state.room;
  if (open?.id !== message.roomId) return;
  // The first page of the room is on its way: shown after it, if it is not in it.
  if (open.early) return open.early.push(message);
  const nearEnd = atEnd();
  if (appendMessage(message) && nearEnd) scrollToEnd();
  markRead();
}

/** Moves the message's room to the top with its preview and unread count. A seq the
 * list already counts (a replay after a resume) changes nothing. */
function listMessage(message) {
  const room = state.rooms.get(message.roomId);
  if (!room) return fetchRoom(message.roomId);
  if (message.seq <= room.lastSeq) return;
  room.lastSeq = message.seq;
  room.lastMessage = message;
  if (message.sender.id !== state.me.id) setUnread(room, room.unreadCount + 1);
  putRoom(room);
}

/** Sets a listed room's unread count. Each change gets a new mark: an answer of the
 * server that was asked for before a later change (an earlier markRead answered
 * late, a count read before the next receipt) is older than what the list shows. */
function setUnread(room, count) {
  room.unreadCount = count;
  room.unreadMark = (room.unreadMark ?? 0) + 1;
}

/** Runs `ask` for a room's unread count, and sets it only if nothing changed the
 * count (or replaced the room) meanwhile; true if it did. */
async function askUnread(roomId, ask) {
  const before = state.rooms.get(roomId);
  const mark = before?.unreadMark;
  const count = await ask();
  const room = state.rooms.get(roomId);
  if (!room || room !== before || room.unreadMark !== mark) return false;
  setUnread(room, count);
  renderRooms();
  return true;
}

/** A room the list does not show (past the synced ones, or hidden): read it once. */
async function fetchRoom(roomId) {
  if (state.leaving.has(roomId) || state.fetching.has(roomId)) return;
  state.fetching.add(roomId);
  try {
    const data = await gql(`query($r: ID!) { room(id: $r) { ${ROOM} } }`, { r: roomId });
    if (!state.rooms.has(roomId) && !state.leaving.has(roomId)) putRoom(data.room);
  } catch {
    // Not a room of the viewer's any more: its RoomLeft is on the way.
  } finally {
    state.fetching.delete(roomId);
  }
}

function messageUpdated(message) {
  const room = state.rooms.get(message.roomId);
  if (room?.lastMessage?.seq === message.seq) {
    room.lastMessage = message;
    renderRooms();
  }
  if (state.room?.id !== message.roomId) return;
  const shown = $("messages").querySelector(`li[data-seq="${message.seq}"]`);
  if (shown) shown.replaceWith(messageItem(message));
}

function typingChanged(event) {
  const room = state.room;
  if (room?.id !== event.roomId || event.user.id === state.me.id) return;
  if (event.typing) room.typing.set(event.user.id, named(event.user));
  else room.typing.delete(event.user.id);
  renderTyping(room);
}

/** The viewer's own read marker moved (here or in another window): all read, or
 * read the count again when only part is. Others' receipts are not shown. */
function receiptArrived(receipt) {
  const room = state.rooms.get(receipt.roomId);
  if (!room || receipt.user.id !== state.me.id) return;
  if (receipt.lastReadSeq >= room.lastSeq) {
    setUnread(room, 0);
    renderRooms();
  } else {
    refreshUnread(room.id);
  }
}

async function refreshUnread(roomId, attempts = 5) {
  try {
    const read = async () => {
      const data = await gql("query($r: ID!) { room(id: $r) { unreadCount } }", { r: roomId });
      return data.room.unreadCount;
    };
    // A count changed meanwhile by a message counts on a stale base: read it again
    // (a few times; in a flood the next receipt reads it anyway).
    const set = await askUnread(roomId, read);
    if (!set && attempts > 1 && state.rooms.has(roomId)) refreshUnread(roomId, attempts - 1);
  } catch {
    // The next message or receipt counts again.
  }
}

/** A rename, a member in or out, a role: the list shows the room as it now stands. */
function membersChanged(changed) {
  const room = state.rooms.get(changed.id);
  if (!room) return;
  Object.assign(room, { kind: changed.kind, title: changed.title, members: changed.members });
  renderRooms();
  if (state.room?.id === room.id && room.kind === "GROUP") loadGroup(state.room);
}

/** A room the viewer was put in goes on top; one the list shows already (this page
 * joined it itself) is shown as it now stands, where it is. */
function roomJoined(room) {
  state.leaving.delete(room.id);
  if (!state.rooms.has(room.id)) return putRoom(room);
  state.rooms.set(room.id, room);
  renderRooms();
}

/** Nothing of the room follows its RoomLeft: it leaves the list (and the view). */
function roomLeft(roomId) {
  state.leaving.delete(roomId);
  state.rooms.delete(roomId);
  state.order = state.order.filter((id) => id !== roomId);
  renderRooms();
  if (state.room?.id === roomId) closeRoom();
}

function invited(invitation) {
  // The newest first, as the sync gives them (the server's order, not the clocks').
  const others = [...state.invitations].filter(([id]) => id !== invitation.id);
  state.invitations = new Map([[invitation.id, invitation], ...others]);
  renderInvitations();
}

// ---- session ---------------------------------------------------------------------

async function authenticate(event) {
  event.preventDefault();
  const field = event.submitter?.value === "signUp" ? "signUp" : "logIn";
  $("auth-error").textContent = "";
  try {
    const data = await gql(
      `mutation($u: String!, $p: String!) { ${field}(username: $u, password: $p) { token } }`,
      { u: $("username").value.trim(), p: $("password").value },
    );
    state.token = data[field].token;
    sessionStorage.setItem(TOKEN_KEY, state.token);
    await start();
  } catch (error) {
    $("auth-error").textContent = error.message;
  }
}

async function start() {
  try {
    state.me = (await gql(`{ me { ${USER} } }`)).me;
  } catch {
    return signOut();
  }
  $("auth").hidden = true;
  $("app").hidden = false;
  $("me").textContent = state.me.displayName;
  $("me").dataset.userId = state.me.id;
  openSocket();
  state.stopLive = [
    live(
      "subscription { presenceChanged { userId status lastSeenAt } }",
      () => ({}),
      (d) => presenceChanged(d.presenceChanged),
    ),
  ];
  await Promise.all([startOver(), catchUp()]);
}

function signOut() {
  if (state.token) gql("mutation { logOut }").catch(() => {});
  sessionStorage.removeItem(TOKEN_KEY);
  Object.assign(state, { token: null, me: null, room: null, pending: null });
  state.account?.stop();
  state.account = null;
  state.startOvers = 0;
  for (const stop of state.stopLive) stop();
  state.stopLive = [];
  state.ws?.dispose();
  state.ws = null;
  state.rooms.clear();
  state.order = [];
  state.leaving.clear();
  state.invitations.clear();
  state.friends.clear();
  $("account").open = false;
  $("app").hidden = true;
  $("auth").hidden = false;
}

// ---- rooms -----------------------------------------------------------------------

/** Shows the room at the top of the list (added, or moved by new activity). */
function putRoom(room) {
  state.rooms.set(room.id, room);
  state.order = [room.id, ...state.order.filter((id) => id !== room.id)];
  renderRooms();
}

function others(room) {
  return room.members.filter((member) => member.id !== state.me.id);
}

function roomName(room) {
  if (room.kind === "GROUP") return room.title;
  return others(room)[0]?.displayName ?? "just you";
}

/** The person a DIRECT room is with, if any. */
function roomPeer(room) {
  return room.kind === "DIRECT" ? others(room)[0] : undefined;
}

function renderRooms() {
  const list = $("rooms");
  list.replaceChildren();
  if (!state.order.length) list.append(emptyItem("No rooms yet."));
  for (const id of state.order) {
    const room = state.rooms.get(id);
    const item = document.createElement("li");
    item.dataset.roomId = id;
    item.classList.toggle("current", state.room?.id === id);
    if (room.kind === "DIRECT") {
      const other = others(room)[0];
      const friend = other && state.friends.get(other.id);
      item.append(dot(friend?.presence?.status ?? other?.presence?.status));
    }
    const unread = span("unread", String(room.unreadCount));
    unread.dataset.count = String(room.unreadCount);
    const last = room.lastMessage;
    const preview = last ? `${named(last.sender)}: ${last.deleted ? "(deleted)" : last.text}` : "";
    const peer = roomPeer(room);
    item.append(span("name", roomName(room)), ...(peer ? [handle(peer)] : []));
    item.append(unread, span("preview", preview));
    item.addEventListener("click", () => openRoom(id));
    list.append(item);
  }
}

/** Shows the room's newest page; its new messages come by the account's events, those
 * arriving before the page are held (`early`) and shown after it. */
async function openRoom(id) {
  const room = { id, lastSeq: 0, startCursor: null, hasPrevious: false, loading: true, early: [] };
  room.typing = new Map(); // user id -> name and username, of those typing now
  $("typing").textContent = "";
  state.room = room;
  state.pending = null;
  setReplyTo(null);
  renderRooms();
  const peer = roomPeer(state.rooms.get(id));
  $("room-title").replaceChildren(roomName(state.rooms.get(id)), ...(peer ? [" ", handle(peer)] : []));
  $("messages").replaceChildren();
  $("room-error").textContent = "";
  $("composer").hidden = false;
  $("group").hidden = state.rooms.get(id).kind !== "GROUP";
  $("group-error").textContent = "";
  if (!$("group").hidden) loadGroup(room);
  $("text").focus();
  let page;
  try {
    page = await history(id, { last: PAGE_SIZE });
  } catch (error) {
    return showRoomError(error.message);
  }
  if (state.room !== room) return;
  for (const { node } of page.edges) appendMessage(node);
  for (const message of room.early) appendMessage(message); // a seq already shown is dropped
  room.early = null;
  room.loading = false;
  scrollToEnd();
  fillView();
  markRead();
}

/** No room open (the viewer left the open one). */
function closeRoom() {
  state.room = null;
  renderRooms();
  $("room-title").textContent = "Pick a room, or find someone to talk to.";
  $("messages").replaceChildren();
  $("typing").textContent = "";
  $("room-error").textContent = "";
  $("composer").hidden = true;
  $("group").hidden = true;
}

// ---- group settings --------------------------------------------------------------

async function loadGroup(room) {
  let group;
  try {
    group = (await gql(`query($r: ID!) { room(id: $r) { ${GROUP} } }`, { r: room.id })).room;
  } catch (error) {
    return showRoomError(error);
  }
  if (state.room === room) renderGroup(room, group);
}

/** The members with their roles, and what the viewer's role lets them do. */
function renderGroup(room, group) {
  $("room-title").textContent = group.title;
  const manager = group.viewerRole !== "MEMBER";
  $("group-rename").hidden = !manager;
  if (document.activeElement !== $("group-title")) $("group-title").value = group.title;
  const list = $("group-members");
  list.replaceChildren();
  for (const { node } of group.memberships.edges) {
    const item = document.createElement("li");
    item.dataset.userId = node.user.id;
    item.append(span("name", node.user.displayName), handle(node.user), span("role", node.role));
    const other = node.user.id !== state.me.id;
    // The owner removes anyone else, an admin members only; nobody removes the owner.
    if (other && (group.viewerRole === "OWNER" || (manager && node.role === "MEMBER"))) {
      item.append(
        button("remove", () =>
          changeGroup(room, "mutation($r: ID!, $u: ID!) { removeMember(roomId: $r, userId: $u) { id } }", {
            u: node.user.id,
          }),
        ),
      );
    }
    if (other && group.viewerRole === "OWNER") {
      for (const role of ROLES.filter((each) => each !== node.role)) {
        item.append(
          button(`make ${role.toLowerCase()}`, () =>
            changeGroup(
              room,
              "mutation($r: ID!, $u: ID!, $role: RoomRole!) { setMemberRole(roomId: $r, userId: $u, role: $role) { id } }",
              { u: node.user.id, role },
            ),
          ),
        );
      }
    }
    list.append(item);
  }
}

async function changeGroup(room, mutation, variables) {
  $("group-error").textContent = "";
  try {
    await gql(mutation, { r: room.id, ...variables });
  } catch (error) {
    $("group-error").textContent = error.message;
    return;
  }
  if (state.room === room) await loadGroup(room);
}

function renameGroup(event) {
  event.preventDefault();
  const room = state.room;
  if (!room) return;
  const mutation = "mutation($r: ID!, $t: String!) { updateRoom(roomId: $r, title: $t) { id } }";
  changeGroup(room, mutation, { t: $("group-title").value });
}

async function leaveGroup() {
  const room = state.room;
  if (!room) return;
  try {
    await gql("mutation($r: ID!) { leaveRoom(roomId: $r) }", { r: room.id });
  } catch (error) {
    $("group-error").textContent = error.message;
    return;
  }
  // Its events up to the RoomLeft may still come: they must not bring it back.
  state.leaving.add(room.id);
  state.rooms.delete(room.id);
  state.order = state.order.filter((id) => id !== room.id);
  if (state.room === room) closeRoom();
  else renderRooms();
}

function renderTyping(room) {
  const names = [...room.typing.values()];
  $("typing").textContent = names.length ? `${names.join(", ")} ${names.length > 1 ? "are" : "is"} typing…` : "";
}

/** Tells the room the viewer is typing, at most every TYPING_EVERY_MS. */
function typed() {
  const room = state.room;
  if (!room || !$("text").value.trim()) return;
  const now = Date.now();
  if (now - (room.typingSentAt ?? 0) < TYPING_EVERY_MS) return;
  room.typingSentAt = now;
  gql("mutation($r: ID!) { setTyping(roomId: $r, typing: true) }", { r: room.id }).catch(() => {});
}

async function history(roomId, paging) {
  const data = await gql(
    `query($r: ID!, $last: Int, $before: String) {
      messages(roomId: $r, last: $last, before: $before) {
        edges { node { ${MESSAGE} } } pageInfo { hasPreviousPage startCursor }
      }
    }`,
    { r: roomId, ...paging },
  );
  const page = data.messages;
  const room = state.room;
  if (room?.id === roomId && (room.startCursor === null || paging.before)) {
    room.startCursor = page.pageInfo.startCursor;
    room.hasPrevious = page.pageInfo.hasPreviousPage;
  }
  return page;
}

async function loadOlder() {
  const room = state.room;
  // One older page at a time: a caller arriving meanwhile waits for the same one.
  if (room?.older) return room.older;
  if (!room || room.loading || !room.hasPrevious) return;
  room.loading = true;
  room.older = (async () => {
    try {
      const page = await history(room.id, { last: PAGE_SIZE, before: room.startCursor });
      if (state.room !== room) return;
      const list = $("messages");
      const heightBefore = list.scrollHeight;
      list.prepend(...page.edges.map(({ node }) => messageItem(node)));
      // Keep the messages in view where they were.
      list.scrollTop += list.scrollHeight - heightBefore;
    } catch (error) {
      showRoomError(error.message);
    } finally {
      room.loading = false;
      room.older = null;
    }
    fillView();
  })();
  return room.older;
}

/** Loads older pages until the list can scroll (no scroll event fires before). */
function fillView() {
  const list = $("messages");
  if (list.scrollHeight <= list.clientHeight) loadOlder();
}

let markReadQueued = false;
function markRead() {
  const room = state.room;
  if (!room || !room.lastSeq || markReadQueued || document.hidden) return;
  markReadQueued = true;
  // One markRead for a burst of messages.
  setTimeout(async () => {
    markReadQueued = false;
    // What the room showed is read, even if another room opened meanwhile: that
    // one is marked next.
    if (state.room !== room) markRead();
    try {
      // A change meanwhile comes with its own markRead or receipt, which sets the count.
      await askUnread(room.id, async () => {
        const data = await gql(
          "mutation($r: ID!, $s: Int!) { markRead(roomId: $r, seq: $s) { id unreadCount } }",
          { r: room.id, s: room.lastSeq },
        );
        return data.markRead.unreadCount;
      });
    } catch {
      // The next message (or the next visit) marks it read.
    }
  }, 100);
}

// ---- messages --------------------------------------------------------------------

/** Shows a message after the last one; false if its seq is already shown. */
function appendMessage(message) {
  const room = state.room;
  if (message.seq <= room.lastSeq) return false;
  room.lastSeq = message.seq;
  $("messages").append(messageItem(message));
  if (state.pending?.clientId === message.clientId) state.pending = null;
  return true;
}

function messageItem(message) {
  const item = document.createElement("li");
  item.dataset.seq = String(message.seq);
  item.dataset.messageId = message.id;
  item.classList.toggle("mine", message.sender.id === state.me.id);
  const text = message.deleted ? span("text deleted", "message deleted") : span("text", message.text);
  const time = document.createElement("time");
  time.dateTime = message.createdAt;
  time.textContent = new Date(message.createdAt).toLocaleTimeString([], {
    hour: "2-digit",
    minute: "2-digit",
  });
  if (message.replyTo) item.append(quote(message.replyTo));
  if (message.sender.avatarUrl) item.append(avatar(message.sender.avatarUrl));
  item.append(span("who", message.sender.displayName), handle(message.sender), text, time);
  if (message.editedAt && !message.deleted) item.append(span("edited", "(edited)"));
  for (const attachment of message.attachments ?? []) item.append(attachmentView(attachment));
  item.classList.toggle("mentions-me", message.mentions.some((user) => user.id === state.me.id));
  if (!message.deleted) item.append(reactionBar(message), messageActions(message));
  return item;
}

async function send(event) {
  event.preventDefault();
  const room = state.room;
  const text = $("text").value.trim();
  const file = $("attach").files[0];
  if (!room || (!text && !file)) return;
  // A retry of the same text after a failure reuses its clientId: the server then
  // returns the first copy instead of storing a second one.
  if (state.pending?.text !== text || state.pending?.file !== file) {
    state.pending = { clientId: newClientId(), text, file };
  }
  const { clientId } = state.pending;
  $("room-error").textContent = "";
  try {
    const files = file ? [await uploadFile(room.id, file)] : null;
    await gql(
      `mutation($r: ID!, $t: String!, $c: String, $to: ID, $a: [ID!]) {
        sendMessage(roomId: $r, text: $t, clientId: $c, replyToId: $to, attachmentIds: $a) { seq }
      }`,
      { r: room.id, t: text, c: clientId, to: state.replyTo?.id ?? null, a: files },
    );
    // The message itself arrives through the account's events, in seq order.
    if ($("text").value.trim() === text) $("text").value = "";
    setReplyTo(null);
    if ($("attach").files[0] === file) clearAttachment();
    room.typingSentAt = 0;
    gql("mutation($r: ID!) { setTyping(roomId: $r, typing: false) }", { r: room.id }).catch(() => {});
  } catch (error) {
    showRoomError(`Not sent (${error.message}); send again to retry.`);
  }
}

function newClientId() {
  const bytes = crypto.getRandomValues(new Uint8Array(12));
  return `web-${Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("")}`;
}

const atEnd = () => {
  const list = $("messages");
  return list.scrollHeight - list.scrollTop - list.clientHeight < 60;
};
const scrollToEnd = () => {
  $("messages").scrollTop = $("messages").scrollHeight;
};

// ---- replies, reactions, mentions ------------------------------------------------

/** The original a reply answers, as it stands now; a click shows it in the room. */
function quote(original) {
  const element = document.createElement("button");
  element.type = "button";
  element.className = "quote";
  element.dataset.replyTo = String(original.seq);
  const said = original.deleted ? span("quoted deleted", "message deleted") : span("quoted", original.text);
  element.append(span("quoted-who", original.sender.displayName), said);
  element.addEventListener("click", () => showMessage(state.room.id, original.seq, "highlight"));
  return element;
}

/** One button per emoji (count, and whether the viewer's own is among them). */
function reactionBar(message) {
  const bar = document.createElement("span");
  bar.className = "reactions";
  for (const group of message.reactions) {
    const chip = button(`${group.emoji} ${group.count}`, () => react(message, group.emoji, !group.reactedByViewer));
    chip.classList.add("reaction");
    chip.classList.toggle("own", group.reactedByViewer);
    chip.dataset.emoji = group.emoji;
    chip.dataset.count = String(group.count);
    bar.append(chip);
  }
  return bar;
}

function showReactions(message) {
  const shown = $("messages").querySelector(`li[data-seq="${message.seq}"]`);
  const bar = shown?.querySelector(".reactions");
  if (!bar) return;
  if (message.deleted) bar.replaceChildren();
  else bar.replaceWith(reactionBar({ ...message, id: shown.dataset.messageId }));
}

/** Reply and react: the actions offered under a message. */
function messageActions(message) {
  const actions = document.createElement("span");
  actions.className = "actions";
  const picker = document.createElement("span");
  picker.className = "picker";
  picker.hidden = true;
  for (const emoji of QUICK_EMOJI) {
    const choice = button(emoji, () => {
      picker.hidden = true;
      react(message, emoji, true);
    });
    choice.dataset.emoji = emoji;
    picker.append(choice);
  }
  actions.append(
    button("Reply", () => setReplyTo(message)),
    button("React", () => {
      picker.hidden = !picker.hidden;
    }),
    picker,
  );
  return actions;
}

async function react(message, emoji, add) {
  const mutation = add ? "addReaction" : "removeReaction";
  try {
    const data = await gql(
      `mutation($m: ID!, $e: String!) { ${mutation}(messageId: $m, emoji: $e) { seq deleted ${REACTIONS} } }`,
      { m: message.id, e: emoji },
    );
    showReactions(data[mutation]);
  } catch (error) {
    showRoomError(error.message);
  }
}

function setReplyTo(message) {
  state.replyTo = message;
  $("replying").hidden = !message;
  if (message) {
    $("replying-to").textContent = `Replying to ${named(message.sender)}: ${message.text}`;
    $("text").focus();
  }
}

/** The "@name" being typed just before the cursor, if any. */
function mentionAt(input) {
  const before = input.value.slice(0, input.selectionStart);
  const match = /(?:^|\s)@([a-z0-9_.]*)$/i.exec(before);
  return match ? { prefix: match[1].toLowerCase(), start: before.length - match[1].length - 1 } : null;
}

/** Offers the room's members whose username starts with what follows the "@". */
function completeMention() {
  const choices = $("mention-choices");
  const room = state.rooms.get(state.room?.id);
  const typed = mentionAt($("text"));
  const members = typed && room ? room.members.filter((user) => user.id !== state.me.id && user.username.startsWith(typed.prefix)) : [];
  choices.replaceChildren(
    ...members.slice(0, 8).map((user) => {
      const item = document.createElement("li");
      item.dataset.username = user.username;
      item.append(span("name", user.displayName), handle(user));
      item.addEventListener("mousedown", (event) => {
        event.preventDefault(); // keeps the focus in the input
        pickMention(user.username);
      });
      return item;
    }),
  );
  choices.hidden = members.length === 0;
}

function pickMention(username) {
  const input = $("text");
  const typed = mentionAt(input);
  if (!typed) return;
  const after = input.value.slice(input.selectionStart);
  input.value = `${input.value.slice(0, typed.start)}@${username} ${after}`;
  const cursor = typed.start + username.length + 2;
  input.setSelectionRange(cursor, cursor);
  $("mention-choices").hidden = true;
}

function mentionKeys(event) {
  const first = $("mention-choices").querySelector("li");
  if ((event.key === "Tab" || event.key === "Enter") && first && !$("mention-choices").hidden) {
    event.preventDefault();
    pickMention(first.dataset.username);
  } else if (event.key === "Escape") {
    $("mention-choices").hidden = true;
  }
}

// ---- files -----------------------------------------------------------------------
// Bytes go straight to storage: createUpload signs a ticket, the page sends the file
// where it says, then a message (or the profile) names the upload.

/** Sends the file to storage per a fresh ticket; returns the upload's id. */
async function uploadFile(roomId, file) {
  const { createUpload: ticket } = await gql(
    `mutation($r: ID!, $f: String!, $t: String!, $s: Int!) {
      createUpload(roomId: $r, filename: $f, contentType: $t, size: $s) {
        attachmentId method url fields { name value } } }`,
    { r: roomId, f: file.name, t: file.type || "application/octet-stream", s: file.size },
  );
  const headers = Object.fromEntries(ticket.fields.map((field) => [field.name, field.value]));
  const sent = await fetch(ticket.url, { method: ticket.method, headers, body: file });
  if (!sent.ok) throw new Error(`file storage refused ${file.name} (${sent.status})`);
  return ticket.attachmentId;
}

/** An image shown inline at its size, or a link that downloads the file. */
function attachmentView(attachment) {
  if (attachment.contentType.startsWith("image/") && attachment.width) {
    const image = document.createElement("img");
    image.className = "attachment";
    image.src = attachment.url;
    image.alt = attachment.filename;
    image.width = Math.min(attachment.width, 320);
    image.height = Math.round((image.width * attachment.height) / attachment.width);
    return image;
  }
  const link = document.createElement("a");
  link.className = "attachment";
  link.href = attachment.url;
  link.download = attachment.filename;
  link.rel = "noopener";
  link.textContent = `${attachment.filename} (${Math.max(1, Math.round(attachment.size / 1024))} KiB)`;
  return link;
}

function avatar(url) {
  const image = document.createElement("img");
  image.className = "avatar";
  image.src = url;
  image.alt = "";
  return image;
}

function attachmentChosen() {
  const file = $("attach").files[0];
  $("attached").textContent = file ? file.name : "";
}

function clearAttachment() {
  $("attach").value = "";
  attachmentChosen();
}

/** The chosen image becomes the viewer's profile picture (an upload into a room of
 * theirs: the open one, else the most recent). */
async function setAvatar(event) {
  event.preventDefault();
  const file = $("avatar-file").files[0];
  const roomId = state.room?.id ?? state.order[0];
  if (!file) return;
  if (!roomId) {
    $("account-error").textContent = "Open a room first: a picture is uploaded through one.";
    return;
  }
  await accountAction(async () => {
    const attachmentId = await uploadFile(roomId, file);
    const { updateProfile } = await gql(
      "mutation($a: ID) { updateProfile(avatarUploadId: $a) { avatarUrl } }",
      { a: attachmentId },
    );
    showMyAvatar(updateProfile.avatarUrl);
    $("avatar-file").value = "";
    $("account-status").textContent = "Profile picture changed.";
  });
}

async function loadMyAvatar() {
  showMyAvatar((await gql("query { me { avatarUrl } }")).me.avatarUrl);
}

function showMyAvatar(url) {
  $("my-avatar").hidden = !url;
  if (url) $("my-avatar").src = url;
}

// ---- people ----------------------------------------------------------------------

async function loadFriends() {
  const data = await gql(`{ friends { ${USER} } }`);
  state.friends = new Map(data.friends.map((user) => [user.id, user]));
  renderFriends();
  renderRooms();
}

function presenceChanged(presence) {
  const friend = state.friends.get(presence.userId);
  if (friend) friend.presence = presence;
  renderFriends();
  renderRooms();
}

function renderFriends() {
  const list = $("friends");
  list.replaceChildren();
  if (!state.friends.size) list.append(emptyItem("No friends yet: find someone above."));
  for (const friend of state.friends.values()) {
    const item = document.createElement("li");
    item.dataset.userId = friend.id;
    item.append(dot(friend.presence?.status), span("name", friend.displayName), handle(friend));
    item.append(button("Chat", () => chatWith(friend.id)));
    list.append(item);
  }
}

async function loadRequests() {
  const data = await gql(`{ friendRequests { id from { ${USER} } to { id } } }`);
  const incoming = data.friendRequests.filter((request) => request.to.id === state.me.id);
  const list = $("requests");
  list.replaceChildren();
  $("requests-title").hidden = !incoming.length;
  for (const request of incoming) {
    const item = document.createElement("li");
    item.dataset.requestId = request.id;
    item.append(span("name", request.from.displayName), handle(request.from));
    item.append(
      button("Accept", () => respond(request.id, true)),
      button("Decline", () => respond(request.id, false)),
    );
    list.append(item);
  }
}

async function respond(requestId, accept) {
  await gql(
    "mutation($id: ID!, $a: Boolean!) { respondToFriendRequest(requestId: $id, accept: $a) { id } }",
    { id: requestId, a: accept },
  ).catch((error) => showRoomError(error.message));
  await Promise.all([loadRequests(), loadFriends()]).catch(showRoomError);
}

/** The pending invitations (from the sync, then RoomInvited events), newest first. */
function renderInvitations() {
  const pending = [...state.invitations.values()];
  const list = $("invitations");
  list.replaceChildren();
  $("invitations-title").hidden = !pending.length;
  for (const invitation of pending) {
    const item = document.createElement("li");
    item.dataset.invitationId = invitation.id;
    item.append(
      span("name", invitation.room.title),
      span("preview", `from ${named(invitation.inviter)}, ${invitation.room.memberCount} in it`),
    );
    item.append(
      button("Join", () => answerInvitation(invitation.id, true)),
      button("Decline", () => answerInvitation(invitation.id, false)),
    );
    list.append(item);
  }
}

/** Joins (the room shows at once; its RoomJoined event follows) or declines. */
async function answerInvitation(invitationId, accept) {
  try {
    const data = await gql(
      `mutation($id: ID!, $a: Boolean!) { respondToRoomInvitation(invitationId: $id, accept: $a) { ${ROOM} } }`,
      { id: invitationId, a: accept },
    );
    if (data.respondToRoomInvitation) putRoom(data.respondToRoomInvitation);
  } catch (error) {
    showRoomError(error.message);
    if (error.code !== "NOT_FOUND") return; // still pending: it may be answered again
  }
  state.invitations.delete(invitationId);
  renderInvitations();
}

async function search(event) {
  event.preventDefault();
  const query = $("search").value.trim();
  const list = $("search-results");
  list.replaceChildren();
  if (!query) return;
  try {
    const data = await gql(
      `query($q: String!) { searchUsers(query: $q, first: 10) { id username displayName } }`,
      { q: query },
    );
    const found = data.searchUsers.filter((user) => user.id !== state.me.id);
    if (!found.length) list.append(emptyItem("Nobody by that name."));
    for (const user of found) {
      const item = document.createElement("li");
      item.dataset.userId = user.id;
      item.append(span("name", named(user)));
      item.append(button("Chat", () => chatWith(user.id)));
      if (!state.friends.has(user.id)) item.append(button("Add friend", (b) => befriend(user.id, b)));
      list.append(item);
    }
    await loadRequests();
  } catch (error) {
    list.append(emptyItem(error.message));
  }
}

async function befriend(userId, element) {
  try {
    await gql("mutation($u: ID!) { sendFriendRequest(userId: $u) { id } }", { u: userId });
    element.textContent = "Requested";
  } catch (error) {
    element.textContent = error.message;
  }
  element.disabled = true;
}

async function chatWith(userId) {
  try {
    const data = await gql(`mutation($u: ID!) { createDirectRoom(userId: $u) { ${ROOM} } }`, {
      u: userId,
    });
    const room = data.createDirectRoom;
    if (!state.rooms.has(room.id)) putRoom(room);
    $("search-results").replaceChildren();
    $("search").value = "";
    await openRoom(room.id);
  } catch (error) {
    showRoomError(error.message);
  }
}

// ---- message search ----------------------------------------------------------------

const SEARCH_PAGE = 10;
// A result older than this many pages of history opens its room at the newest.
const JUMP_PAGES = 20;

async function searchMessages(event) {
  event.preventDefault();
  const query = $("message-search").value.trim();
  $("message-results").replaceChildren();
  if (query) await moreResults(query, null);
}

/** Appends a page of results after the cursor, with a button for the next page. */
async function moreResults(query, after) {
  const list = $("message-results");
  list.querySelector("li.more")?.remove();
  let page;
  try {
    const data = await gql(
      `query($q: String!, $first: Int, $after: String) {
        searchMessages(query: $q, first: $first, after: $after) {
          edges { node { ${MESSAGE} } } pageInfo { hasNextPage endCursor }
        }
      }`,
      { q: query, first: SEARCH_PAGE, after },
    );
    page = data.searchMessages;
  } catch (error) {
    list.append(emptyItem(error.message));
    return;
  }
  if (!after && !page.edges.length) list.append(emptyItem("No message has all of these words."));
  for (const { node } of page.edges) list.append(resultItem(node));
  if (page.pageInfo.hasNextPage) {
    const more = emptyItem("");
    more.classList.add("more");
    more.append(button("More results", () => moreResults(query, page.pageInfo.endCursor)));
    list.append(more);
  }
}

function resultItem(message) {
  const item = document.createElement("li");
  item.dataset.messageId = message.id;
  item.dataset.roomId = message.roomId;
  item.dataset.seq = String(message.seq);
  const room = state.rooms.get(message.roomId);
  item.append(
    span("room", room ? roomName(room) : ""),
    handle(message.sender),
    span("text", message.text),
  );
  item.addEventListener("click", () => showMessage(message.roomId, message.seq, "found"));
  return item;
}

/** Opens the room (unless it is open), loads older pages until the message with this
 * seq shows, as scrolling up would, and points at it with the class `mark`. */
async function showMessage(roomId, seq, mark) {
  if (state.room?.id !== roomId) {
    try {
      if (!state.rooms.has(roomId)) {
        // A room the list does not show (past the synced ones, or hidden): read it first.
        const data = await gql(`query($r: ID!) { room(id: $r) { ${ROOM} } }`, { r: roomId });
        if (state.leaving.has(roomId)) return showRoomError("This room was just left.");
        putRoom(data.room);
      }
      await openRoom(roomId);
    } catch (error) {
      return showRoomError(error.message);
    }
  }
  const room = state.room;
  const shown = () => document.querySelector(`#messages li[data-seq="${seq}"]`);
  for (let pages = 0; !shown() && room.hasPrevious && pages < JUMP_PAGES; ) {
    if (room.loading && !room.older) {
      await new Promise((resolve) => setTimeout(resolve, 50)); // the first page is on its way
    } else {
      await loadOlder();
      pages++;
    }
    if (state.room !== room) return;
  }
  const item = shown();
  if (!item) return;
  item.scrollIntoView({ block: "center" });
  item.classList.remove(mark);
  void item.offsetWidth; // restarts the mark's animation, if it has one
  item.classList.add(mark);
}

// ---- small DOM helpers -----------------------------------------------------------

// A display name is free text: two people may pick the same one, or one that looks
// alike. The username is unique, so it goes beside the name wherever a person is shown.
// ---- account: sessions, password, deletion ----------------------------------------

async function accountAction(work) {
  $("account-error").textContent = "";
  $("account-status").textContent = "";
  try {
    await work();
  } catch (error) {
    $("account-error").textContent = error.message;
  }
}

async function loadSessions() {
  const data = await gql("{ sessions { id createdAt lastSeenAt current userAgent } }");
  const list = $("sessions");
  list.replaceChildren();
  for (const session of data.sessions) {
    const item = document.createElement("li");
    item.dataset.sessionId = session.id;
    item.dataset.current = String(session.current);
    const when = `since ${new Date(session.createdAt).toLocaleString()}`;
    item.append(
      span("name", session.current ? `this browser, ${when}` : when),
      button(session.current ? "log out" : "end", () => accountAction(() => endSession(session))),
      span("agent", session.userAgent ?? "unknown client"),
    );
    item.title = `last seen ${new Date(session.lastSeenAt).toLocaleString()}`;
    list.append(item);
  }
}

async function endSession(session) {
  await gql("mutation($s: ID!) { endSession(sessionId: $s) }", { s: session.id });
  if (session.current) return signOut();
  await loadSessions();
}

async function changePassword(event) {
  event.preventDefault();
  await accountAction(async () => {
    await gql("mutation($c: String!, $n: String!) { changePassword(currentPassword: $c, newPassword: $n) }", {
      c: $("current-password").value,
      n: $("new-password").value,
    });
    $("password-form").reset();
    $("account-status").textContent = "Password changed; your other sessions have ended.";
    await loadSessions();
  });
}

async function deleteAccount(event) {
  event.preventDefault();
  await accountAction(async () => {
    await gql("mutation($p: String!) { deleteAccount(password: $p) }", { p: $("delete-password").value });
    $("delete-form").reset();
    signOut();
    $("auth-error").textContent = "Your account was deleted.";
  });
}

function handle(user) {
  return span("handle", `@${user.username}`);
}

function named(user) {
  return `${user.displayName} (@${user.username})`;
}

function span(className, text) {
  const element = document.createElement("span");
  element.className = className;
  element.textContent = text;
  return element;
}

function dot(status) {
  const element = span("dot", "");
  element.dataset.status = status ?? "UNKNOWN";
  element.title = status ? status.toLowerCase() : "";
  return element;
}

function button(label, onClick) {
  const element = document.createElement("button");
  element.type = "button";
  element.className = "small";
  element.textContent = label;
  element.addEventListener("click", (event) => {
    event.stopPropagation();
    onClick(element);
  });
  return element;
}

function emptyItem(text) {
  const item = document.createElement("li");
  item.className = "empty";
  item.textContent = text;
  return item;
}

function showRoomError(error) {
  $("room-error").textContent = typeof error === "string" ? error : error.message;
}

// ---- wiring ----------------------------------------------------------------------

$("auth-form").addEventListener("submit", authenticate);
$("log-out").addEventListener("click", signOut);
$("composer").addEventListener("submit", send);
$("text").addEventListener("input", typed);
$("text").addEventListener("input", completeMention);
$("text").addEventListener("keydown", mentionKeys);
$("cancel-reply").addEventListener("click", () => setReplyTo(null));
$("search-form").addEventListener("submit", search);
$("message-search-form").addEventListener("submit", searchMessages);
$("group-rename").addEventListener("submit", renameGroup);
$("leave-group").addEventListener("click", leaveGroup);
$("account").addEventListener("toggle", () => {
  if ($("account").open) accountAction(loadSessions);
  if ($("account").open) accountAction(loadMyAvatar);
});
$("password-form").addEventListener("submit", changePassword);
$("avatar-form").addEventListener("submit", setAvatar);
$("attach").addEventListener("change", attachmentChosen);
$("delete-form").addEventListener("submit", deleteAccount);
$("messages").addEventListener("scroll", () => {
  if ($("messages").scrollTop < 80) loadOlder();
});
document.addEventListener("visibilitychange", markRead);

if (state.token) start();
else $("auth").hidden = false;
