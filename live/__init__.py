"""Live delivery: what turns consumed broker events into what a socket is sent.

The hub and its inboxes (``live.hub``), the one ordered and authorized stream of a
room (``live.room_stream``), the shared renderings its followers take their
frames from (``live.room_feeds``), a viewer's room list as it changes
(``live.room_lists``), and one account's stream of every room event
(``live.account_stream``, with its cursor in ``live.account_cursor``, and its
renderings shared and taken to the socket by ``live.account_feed``).

Nothing here reads the store or knows GraphQL: each stream reads through a small
protocol the services implement (``RoomHistory``, ``AccountHistory``, ...), and
renders through a callable the transport gives it, so the rules are unit-tested
with no server.
"""
