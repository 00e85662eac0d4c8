"""SQL for the dashboard: fleet-wide counts and per-day series, aggregated in SQLite so
that a page over thousands of agents and updates reads a few dozen rows."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence

# Updates still waiting for a decision or an install.
WAITING_STATES = ("pending", "approved")
ATTENTION_LIST_SIZE = 10
RECENT_FAILURES = 10

# Why an agent needs attention, one 0/1 (or text) column each. Agents send JSON that
# is checked on ingest, but a bad value must cost a reason, never the whole page:
# hence json_valid and the type checks. A breaker is either {"state": "open", ...}
# (what the agent sends) or the bare state. MATERIALIZED: the counts use each reason
# twice, and the JSON is the expensive part.
_FLAGS = """
WITH flags AS MATERIALIZED (
    SELECT
        a.id, a.hostname, a.display_name, a.status, a.disabled, a.last_seen_at,
        a.hardware_changed,
        a.reboot_required,
        (SELECT substr(group_concat(b.key, ', '), 1, 200)
           FROM json_each(CASE WHEN json_valid(a.breaker_states)
                               THEN a.breaker_states ELSE '{}' END) AS b
          WHERE (CASE b.type WHEN 'object' THEN json_extract(b.value, '$.state')
                             ELSE b.value END) = 'open') AS open_breakers,
        (SELECT substr(group_concat(coalesce(json_extract(d.value, '$.device'), '?'), ', '),
                       1, 200)
           FROM json_each(CASE WHEN json_valid(a.system_info)
                               THEN a.system_info ELSE '{}' END, '$.disks') AS d
          WHERE d.type = 'object'
            AND (json_extract(d.value, '$.assessment') = 'FAIL'
                 OR json_extract(d.value, '$.health') = 'failed')) AS failing_disks
    FROM agents AS a
)
"""


_COUNTS = (
    _FLAGS
    + """
SELECT count(*) AS total,
       coalesce(sum(status = 'online'), 0) AS online,
       coalesce(sum(status = 'offline'), 0) AS offline,
       coalesce(sum(disabled), 0) AS disabled,
       coalesce(sum(hardware_changed), 0) AS hardware_changed,
       coalesce(sum(open_breakers IS NOT NULL), 0) AS breaker_open,
       coalesce(sum(reboot_required), 0) AS reboot_required,
       coalesce(sum(failing_disks IS NOT NULL), 0) AS disk_failing,
       coalesce(sum(hardware_changed OR reboot_required OR open_breakers IS NOT NULL
                    OR failing_disks IS NOT NULL), 0) AS attention
FROM flags
"""
)
_NEEDING_ATTENTION = (
    _FLAGS
    + """
SELECT id, hostname, display_name, status, last_seen_at, hardware_changed, reboot_required,
       open_breakers, failing_disks
FROM flags
WHERE hardware_changed OR reboot_required OR open_breakers IS NOT NULL
      OR failing_disks IS NOT NULL
ORDER BY failing_disks IS NULL, hardware_changed = 0, open_breakers IS NULL,
         reboot_required = 0, hostname, id
LIMIT ?
"""
)


def agent_counts(conn: sqlite3.Connection) -> sqlite3.Row:
    """total, online, offline, disabled, attention and one count per attention reason."""
    cursor = conn.execute(_COUNTS)
    row = cursor.fetchone()
    assert row is not None
    return row


def agents_needing_attention(
    conn: sqlite3.Connection, limit: int = ATTENTION_LIST_SIZE
) -> list[sqlite3.Row]:
    """The first `limit` agents with a reason, the most urgent reasons first."""
    cursor = conn.execute(_NEEDING_ATTENTION, (limit,))
    return list(cursor.fetchall())


def waiting_updates_by_severity(conn: sqlite3.Connection) -> list[sqlite3.Row]:
    """(severity, updates, security) for updates pending or approved."""
    # `+status`: most rows wait in a big fleet, and reading each one's security flag
    # through updates_by_status costs three times a plain scan. An index on
    # (status, severity, security) would make either form a covering-index read.
    cursor = conn.execute(
        "SELECT severity, count(*) AS updates, coalesce(sum(security), 0) AS security "
        "FROM updates WHERE +status IN (?, ?) GROUP BY severity",
        WAITING_STATES,
    )
    return list(cursor.fetchall())


def waiting_updates_by_source(conn: sqlite3.Connection) -> list[sqlite3.Row]:
    """(source, updates) for updates pending or approved, the biggest first."""
    # `+status` steers SQLite (no ANALYZE statistics) to a covering scan of
    # updates_by_source instead of a row read per waiting update through updates_by_status.
    cursor = conn.execute(
        "SELECT source, count(*) AS updates FROM updates WHERE +status IN (?, ?) "
        "GROUP BY source ORDER BY updates DESC, source",
        WAITING_STATES,
    )
    return list(cursor.fetchall())


def recent_failed_commands(
    conn: sqlite3.Connection, limit: int = RECENT_FAILURES
) -> list[sqlite3.Row]:
    # One ordered index walk per status (commands_by_status), then the newest of both:
    # an IN list would sort every failed command there ever was.
    cursor = conn.execute(
        "SELECT c.id, c.agent_id, a.hostname, a.display_name, c.kind, c.status, "
        "c.created_at, c.finished_at, c.error "
        "FROM (SELECT * FROM (SELECT id FROM commands WHERE status = 'failed' "
        "                     ORDER BY created_at DESC LIMIT ?) "
        "      UNION ALL "
        "      SELECT * FROM (SELECT id FROM commands WHERE status = 'timed_out' "
        "                     ORDER BY created_at DESC LIMIT ?)) AS newest "
        "JOIN commands AS c ON c.id = newest.id "
        "JOIN agents AS a ON a.id = c.agent_id "
        "ORDER BY c.created_at DESC, c.id DESC LIMIT ?",
        (limit, limit, limit),
    )
    return list(cursor.fetchall())


def recent_failed_installs(
    conn: sqlite3.Connection, limit: int = RECENT_FAILURES
) -> list[sqlite3.Row]:
    cursor = conn.execute(
        "SELECT h.id, h.agent_id, a.hostname, a.display_name, h.command_id, h.source, "
        "h.package, h.from_version, h.to_version, h.started_at "
        "FROM install_history AS h JOIN agents AS a ON a.id = h.agent_id "
        "WHERE h.outcome = 'failed' ORDER BY h.started_at DESC, h.id DESC LIMIT ?",
        (limit,),
    )
    return list(cursor.fetchall())


# The days of a chart, from a JSON list of [day, starts, ends] (UTC text, ends excluded):
# a day in the display zone is not a UTC date, and on a DST change not 24 hours long.
_DAYS = (
    "WITH days (day, starts, ends) AS ("
    "  SELECT json_extract(value, '$[0]'), json_extract(value, '$[1]'), "
    "         json_extract(value, '$[2]') FROM json_each(?)) "
)
_FIRST_SEEN_PER_DAY = _DAYS + (  # noqa: S608 (constant text)
    "SELECT day, (SELECT count(*) FROM updates "
    "             WHERE first_seen_at >= starts AND first_seen_at < ends) AS updates "
    "FROM days"
)
_INSTALLS_PER_DAY = _DAYS + (
    "SELECT day, "
    "coalesce(sum(outcome = 'installed'), 0) AS installed, "
    "coalesce(sum(outcome = 'failed'), 0) AS failed "
    "FROM days LEFT JOIN install_history ON started_at >= starts AND started_at < ends "
    "GROUP BY day ORDER BY day"
)


def updates_first_seen_per_day(
    conn: sqlite3.Connection, days: Sequence[tuple[str, str, str]]
) -> list[sqlite3.Row]:
    """(day, updates) for each (day, starts, ends) of `days`.

    One range count per day on updates_by_first_seen: ten times faster than a GROUP BY
    substr(first_seen_at, 1, 10) over 100,000 rows, which sorts them all in a temp tree.
    """
    cursor = conn.execute(_FIRST_SEEN_PER_DAY, (json.dumps(days),))
    return list(cursor.fetchall())


def installs_per_day(
    conn: sqlite3.Connection, days: Sequence[tuple[str, str, str]]
) -> list[sqlite3.Row]:
    """(day, installed, failed) for each (day, starts, ends) of `days`: a range of
    install_history_by_time per day, reading each attempt's outcome from the table (an
    index on (started_at, outcome) would make it a covering-index scan)."""
    cursor = conn.execute(_INSTALLS_PER_DAY, (json.dumps(days),))
    return list(cursor.fetchall())
