"""The order in which pytest-xdist hands the test files to its workers.

scripts/test.sh runs the suite on several workers a whole file at a time (``--dist
loadfile``): a worker about to run out takes the next file of the queue. xdist's own
queue puts the files with the most tests first, so files of few but long tests (the
benchmark smokes, the terminal client, delivery under load) could come last and keep
one worker busy minutes after the others had nothing left. Handed out longest first,
the last files are short ones and the workers end within seconds of each other.
"""

from __future__ import annotations

import pytest

# Seconds each file took (setup, calls and teardown) in a full run of the suite on a
# loaded two-core machine; only their order matters. Refresh from the ``--durations=0``
# of a full run when files are added or become much slower (test_bench_summary.py and
# test_layering.py: estimated from their own runs after they were made faster). The
# nineteen files added after that run (test_sync.py, test_account_events.py, ...) were
# measured together in three workers on a machine about 6.7 times as loaded as the last
# full run (its slowest tests against theirs), and put in this table's scale, about 1.5
# times that run's. Unmeasured, they had been weighed at 4.7 s a test: test_sync.py
# (its 200 rooms alone take two minutes) queued behind a dozen shorter files.
FILE_SECONDS: dict[str, int] = {
    "test_cli.py": 502,
    "test_bench.py": 445,
    "test_sync.py": 276,
    "test_delivery.py": 194,
    "test_account_events.py": 176,
    "test_browser.py": 133,
    "test_replies_and_mentions.py": 130,
    "test_uploads.py": 129,
    "test_hidden_direct_rooms.py": 122,
    "test_audit_writes.py": 112,
    "test_client_events.py": 111,
    "test_browser_conversation.py": 98,
    "test_messages.py": 98,
    "test_limits.py": 97,
    "test_roles.py": 92,
    "test_browser_account_stream.py": 90,
    "test_message_search.py": 88,
    "test_search_clients.py": 84,
    "test_backend_restarts.py": 83,
    "test_presence.py": 83,
    "test_push.py": 83,
    "test_room_activity.py": 81,
    "test_invitations.py": 77,
    "test_account_deletion.py": 71,
    "test_audit_rules.py": 70,
    "test_cli_rich_messages.py": 69,
    "test_client.py": 66,
    "test_persisted_queries.py": 66,
    "test_logs.py": 62,
    "test_browser_rich_messages.py": 61,
    "test_shared_feeds.py": 60,
    "test_room_event_log.py": 56,
    "test_muting.py": 53,
    "test_rooms.py": 51,
    "test_graceful_stop.py": 50,
    "test_bench_summary.py": 49,
    "test_query_cost.py": 49,
    "test_reactions.py": 47,
    "test_fuzz.py": 46,
    "test_redis_cluster.py": 45,
    # Measured on its own while other runs loaded the machine, not in a full run.
    "test_kafka_failover.py": 65,
    "test_workers.py": 45,
    "test_coverage_gaps.py": 40,
    "test_blocking.py": 39,
    "test_traces_across_instances.py": 39,
    "test_hostile_input.py": 38,
    "test_membership_delivery.py": 37,
    "test_audit_sockets.py": 34,
    "test_bench_account.py": 33,
    "test_bench_scale.py": 60,
    "test_account_sessions.py": 32,
    "test_shard_readiness.py": 30,
    "test_upload_clients.py": 29,
    "test_sessions.py": 28,
    "test_subscribe_storm.py": 28,
    "test_behind_proxy.py": 27,
    "test_trusted_documents.py": 27,
    "test_websocket_auth.py": 27,
    "test_idle_socket_memory.py": 25,
    "test_password_cost.py": 25,
    "test_cli_account_tail.py": 24,
    "test_slow_consumer.py": 21,
    "test_web_files.py": 20,
    "test_cors.py": 19,
    "test_server_edge.py": 15,
    "test_backends.py": 18,
    "test_limits_and_errors.py": 18,
    "test_metrics.py": 18,
    "test_audit_edges.py": 17,
    "test_bench_persisted.py": 16,
    "test_serve_start.py": 16,
    "test_examples.py": 14,
    "test_friends.py": 12,
    "test_websocket_compression.py": 12,
    "test_embedded_lookups.py": 11,
    "test_storage_cors.py": 10,
    "test_web.py": 9,
    "test_apollo_persisted_link.py": 8,
    "test_health.py": 8,
    "test_accounts.py": 7,
    "test_http_spec.py": 7,
    "test_schema_contract.py": 7,
    "test_ha_topology.py": 6,
    "test_persisted_query_store.py": 6,
    "test_redis_slots.py": 6,
    "test_layering.py": 4,
    "test_malformed_frames.py": 2,
    "test_trace_context.py": 2,
    "test_cli_startup.py": 1,
    "test_background.py": 1,
    "test_document_caches.py": 1,
    "test_kafka_topics.py": 1,
    "test_key_filter.py": 1,
    "test_room_stream.py": 1,
    "test_account_feed.py": 0,
    "test_file_order.py": 0,
    "test_account_stream.py": 0,
    "test_docker_files.py": 0,
    "test_embedded_uniques.py": 0,
    "test_push_age.py": 0,
    "test_recent.py": 0,
    "test_recent_room_events.py": 0,
    "test_room_feed_catch_up.py": 0,
    "test_room_writer.py": 0,
    "test_plain_followers.py": 0,
    "test_socket_batched_writes.py": 1,
    "test_hub_resubscribe.py": 0,
    "test_socket_wire.py": 0,
    "test_collector.py": 0,
    "test_subscription_close.py": 0,
    "test_subscription_memory.py": 0,
}
# A file not measured yet: about the mean of the measured files, per test.
SECONDS_PER_UNMEASURED_TEST = 4.7


def file_of(item: pytest.Item) -> str:
    return item.nodeid.split("::", 1)[0].rsplit("/", 1)[-1]


def longest_files_first(items: list[pytest.Item]) -> None:
    """Sorts the items by the expected time of their file, longest first; a file's
    tests stay together and in their order (the sort is stable)."""
    tests_per_file: dict[str, int] = {}
    for item in items:
        tests_per_file[file_of(item)] = tests_per_file.get(file_of(item), 0) + 1

    def expected_seconds(item: pytest.Item) -> float:
        name = file_of(item)
        measured = FILE_SECONDS.get(name)
        if measured is not None:
            return measured
        return tests_per_file[name] * SECONDS_PER_UNMEASURED_TEST

    items.sort(key=lambda item: -expected_seconds(item))
