"""SQL for the scheduler's job table."""

from __future__ import annotations

import sqlite3


def all_jobs(conn: sqlite3.Connection) -> list[sqlite3.Row]:
    cursor = conn.execute(
        "SELECT name, next_run_at, last_started_at, last_finished_at, last_duration_s, "
        "last_error, runs, failures FROM scheduler_jobs ORDER BY name"
    )
    return list(cursor.fetchall())


def ensure_job(conn: sqlite3.Connection, name: str, next_run_at: str) -> None:
    conn.execute(
        "INSERT INTO scheduler_jobs (name, next_run_at) VALUES (?, ?) "
        "ON CONFLICT (name) DO NOTHING",
        (name, next_run_at),
    )


def record_run(
    conn: sqlite3.Connection,
    name: str,
    *,
    started_at: str,
    finished_at: str,
    duration_s: float,
    error: str | None,
    next_run_at: str,
) -> None:
    conn.execute(
        "UPDATE scheduler_jobs SET last_started_at = ?, last_finished_at = ?, "
        "last_duration_s = ?, last_error = ?, next_run_at = ?, runs = runs + 1, "
        "failures = failures + ? WHERE name = ?",
        (started_at, finished_at, duration_s, error, next_run_at, int(error is not None), name),
    )
