"""The GraphQL documents the client sends, all against the public contract."""

from __future__ import annotations

from gql import GraphQLRequest

_USER = "fragment UserFields on User { id username displayName }"
_MESSAGE = """
fragment MessageFields on Message {
  id roomId seq text clientId createdAt editedAt deleted sender { ...UserFields }
  replyTo { id } reactions { emoji count reactedByViewer }
}
"""
_ROOM = """
fragment RoomFields on Room {
  id kind title createdAt lastSeq lastReadSeq unreadCount mutedUntil
  members { ...UserFields }
  lastMessage { ...MessageFields }
}
"""


def _with(operation: str, *fragments: str) -> GraphQLRequest:
    """The operation with the fragments it uses, parsed once."""
    return GraphQLRequest("\n".join((operation, *fragments)))


SIGN_UP = _with(
    """
mutation SignUp($username: String!, $password: String!, $displayName: String) {
  signUp(username: $username, password: $password, displayName: $displayName) {
    token user { ...UserFields }
  }
}
""",
    _USER,
)
LOG_IN = _with(
    """
mutation LogIn($username: String!, $password: String!) {
  logIn(username: $username, password: $password) { token user { ...UserFields } }
}
""",
    _USER,
)
LOG_OUT = _with("mutation LogOut { logOut }")
ME = _with("query Me { me { ...UserFields } }", _USER)
SESSIONS = _with("query Sessions { sessions { id createdAt lastSeenAt current userAgent } }")
END_SESSION = _with("mutation EndSession($sessionId: ID!) { endSession(sessionId: $sessionId) }")
CHANGE_PASSWORD = _with(
    """
mutation ChangePassword($currentPassword: String!, $newPassword: String!) {
  changePassword(currentPassword: $currentPassword, newPassword: $newPassword)
}
"""
)
DELETE_ACCOUNT = _with(
    "mutation DeleteAccount($password: String!) { deleteAccount(password: $password) }"
)
SEARCH_USERS = _with(
    """
query SearchUsers($query: String!, $first: Int) {
  searchUsers(query: $query, first: $first) { ...UserFields }
}
""",
    _USER,
)

SEND_MESSAGE = _with(
    """
mutation SendMessage($roomId: ID!, $text: String!, $clientId: String, $replyToId: ID) {
  sendMessage(roomId: $roomId, text: $text, clientId: $clientId, replyToId: $replyToId) {
    ...MessageFields
  }
}
""",
    _MESSAGE,
    _USER,
)
SEND_FILES = _with(
    """
mutation SendFiles(
  $roomId: ID!, $text: String!, $clientId: String, $replyToId: ID, $attachmentIds: [ID!]
) {
  sendMessage(
    roomId: $roomId, text: $text, clientId: $clientId, replyToId: $replyToId,
    attachmentIds: $attachmentIds
  ) {
    ...MessageFields attachments { id filename contentType size url width height }
  }
}
""",
    _MESSAGE,
    _USER,
)
CREATE_UPLOAD = _with(
    """
mutation CreateUpload($roomId: ID!, $filename: String!, $contentType: String!, $size: Int!) {
  createUpload(roomId: $roomId, filename: $filename, contentType: $contentType, size: $size) {
    attachmentId method url fields { name value } expiresAt
  }
}
"""
)
HISTORY_PAGE = _with(
    """
query History($roomId: ID!, $first: Int!, $after: String) {
  messages(roomId: $roomId, first: $first, after: $after) {
    edges { node { ...MessageFields } }
    pageInfo { hasNextPage endCursor }
  }
}
""",
    _MESSAGE,
    _USER,
)
SEARCH_MESSAGES = _with(
    """
query SearchMessages($query: String!, $roomId: ID, $first: Int!, $after: String) {
  searchMessages(query: $query, roomId: $roomId, first: $first, after: $after) {
    edges { node { ...MessageFields } }
    pageInfo { hasNextPage endCursor }
  }
}
""",
    _MESSAGE,
    _USER,
)
MESSAGE_ADDED = _with(
    """
subscription MessageAdded($roomId: ID!, $afterSeq: Int) {
  messageAdded(roomId: $roomId, afterSeq: $afterSeq) { ...MessageFields }
}
""",
    _MESSAGE,
    _USER,
)
EDIT_MESSAGE = _with(
    """
mutation EditMessage($messageId: ID!, $text: String!) {
  editMessage(messageId: $messageId, text: $text) { ...MessageFields }
}
""",
    _MESSAGE,
    _USER,
)
DELETE_MESSAGE = _with(
    """
mutation DeleteMessage($messageId: ID!) {
  deleteMessage(messageId: $messageId) { ...MessageFields }
}
""",
    _MESSAGE,
    _USER,
)
ADD_REACTION = _with(
    """
mutation AddReaction($messageId: ID!, $emoji: String!) {
  addReaction(messageId: $messageId, emoji: $emoji) { ...MessageFields }
}
""",
    _MESSAGE,
    _USER,
)
REMOVE_REACTION = _with(
    """
mutation RemoveReaction($messageId: ID!, $emoji: String!) {
  removeReaction(messageId: $messageId, emoji: $emoji) { ...MessageFields }
}
""",
    _MESSAGE,
    _USER,
)
SET_TYPING = _with(
    """
mutation SetTyping($roomId: ID!, $typing: Boolean!) { setTyping(roomId: $roomId, typing: $typing) }
"""
)
ROOM_ACTIVITY = _with(
    """
subscription RoomActivity($roomId: ID!) {
  roomActivity(roomId: $roomId) {
    __typename
    ... on TypingEvent { roomId typing user { ...UserFields } }
    ... on ReadReceipt { roomId lastReadSeq user { ...UserFields } }
    ... on MessageUpdated { message { ...MessageFields } }
    ... on MembersChanged { room { ...RoomFields } }
    ... on ReactionChanged { emoji added user { ...UserFields } message { ...MessageFields } }
  }
}
""",
    _ROOM,
    _MESSAGE,
    _USER,
)

CREATE_DIRECT_ROOM = _with(
    """
mutation CreateDirectRoom($userId: ID!) { createDirectRoom(userId: $userId) { ...RoomFields } }
""",
    _ROOM,
    _MESSAGE,
    _USER,
)
CREATE_GROUP_ROOM = _with(
    """
mutation CreateGroupRoom($title: String!, $memberIds: [ID!]!) {
  createGroupRoom(title: $title, memberIds: $memberIds) { ...RoomFields }
}
""",
    _ROOM,
    _MESSAGE,
    _USER,
)
# The first members of each room only: a full list of invitations, each with every
# member, would pass the server's query cost limit.
ROOM_INVITATIONS = _with(
    """
query RoomInvitations {
  roomInvitations {
    id createdAt inviter { ...UserFields }
    room {
      id kind title createdAt lastSeq lastReadSeq unreadCount mutedUntil
      members(first: 20) { ...UserFields }
      lastMessage { ...MessageFields }
    }
  }
}
""",
    _MESSAGE,
    _USER,
)
RESPOND_TO_ROOM_INVITATION = _with(
    """
mutation RespondToRoomInvitation($invitationId: ID!, $accept: Boolean!) {
  respondToRoomInvitation(invitationId: $invitationId, accept: $accept) { ...RoomFields }
}
""",
    _ROOM,
    _MESSAGE,
    _USER,
)
MUTE_ROOM = _with(
    """
mutation MuteRoom($roomId: ID!, $until: DateTime) {
  muteRoom(roomId: $roomId, until: $until) { ...RoomFields }
}
""",
    _ROOM,
    _MESSAGE,
    _USER,
)
UNMUTE_ROOM = _with(
    "mutation UnmuteRoom($roomId: ID!) { unmuteRoom(roomId: $roomId) { ...RoomFields } }",
    _ROOM,
    _MESSAGE,
    _USER,
)
UPDATE_ROOM = _with(
    """
mutation UpdateRoom($roomId: ID!, $title: String!) {
  updateRoom(roomId: $roomId, title: $title) { ...RoomFields }
}
""",
    _ROOM,
    _MESSAGE,
    _USER,
)
REMOVE_MEMBER = _with(
    """
mutation RemoveMember($roomId: ID!, $userId: ID!) {
  removeMember(roomId: $roomId, userId: $userId) { ...RoomFields }
}
""",
    _ROOM,
    _MESSAGE,
    _USER,
)
SET_MEMBER_ROLE = _with(
    """
mutation SetMemberRole($roomId: ID!, $userId: ID!, $role: RoomRole!) {
  setMemberRole(roomId: $roomId, userId: $userId, role: $role) { ...RoomFields }
}
""",
    _ROOM,
    _MESSAGE,
    _USER,
)
MEMBERSHIPS_PAGE = _with(
    """
query Memberships($id: ID!, $first: Int!, $after: String) {
  room(id: $id) {
    memberships(first: $first, after: $after) {
      edges { node { user { ...UserFields } role joinedAt } }
      pageInfo { hasNextPage endCursor }
    }
  }
}
""",
    _USER,
)
ROOM = _with("query Room($id: ID!) { room(id: $id) { ...RoomFields } }", _ROOM, _MESSAGE, _USER)
ROOM_LAST_SEQ = _with("query RoomLastSeq($id: ID!) { room(id: $id) { lastSeq } }")
# Where the account stands now: a token for events(since) with nothing before it.
SYNC_TOKEN = _with("query SyncToken { sync(rooms: 1, messagesPerRoom: 0) { nextToken } }")
ROOMS_PAGE = _with(
    """
query Rooms($first: Int!, $after: String) {
  rooms(first: $first, after: $after) {
    edges { node { ...RoomFields } }
    pageInfo { hasNextPage endCursor }
  }
}
""",
    _ROOM,
    _MESSAGE,
    _USER,
)
# The viewer's whole account: an invitation's room shows its first members only, as
# ROOM_INVITATIONS does.
EVENTS = _with(
    """
subscription Events($since: String) {
  events(since: $since) {
    token
    payload {
      __typename
      ... on MessageAdded { message { ...MessageFields } }
      ... on MessageUpdated { message { ...MessageFields } }
      ... on ReactionChanged { emoji added user { ...UserFields } message { ...MessageFields } }
      ... on TypingEvent { roomId typing user { ...UserFields } }
      ... on ReadReceipt { roomId lastReadSeq user { ...UserFields } }
      ... on MembersChanged { room { ...RoomFields } }
      ... on RoomJoined { room { ...RoomFields } }
      ... on RoomLeft { roomId }
      ... on RoomInvited {
        invitation {
          id createdAt inviter { ...UserFields }
          room {
            id kind title createdAt lastSeq lastReadSeq unreadCount mutedUntil
            members(first: 20) { ...UserFields }
            lastMessage { ...MessageFields }
          }
        }
      }
    }
  }
}
""",
    _ROOM,
    _MESSAGE,
    _USER,
)
