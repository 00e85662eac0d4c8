"""/healthz, /readyz and /metrics on a real appliance process, and `doctor`."""

from __future__ import annotations

import shutil
import sqlite3
import time
from pathlib import Path

import pytest

from appliance.store.migrations import load_migrations
from tests.support import RunningAppliance, run_cli, start_appliance

pytestmark = pytest.mark.slow


def test_healthz_answers_without_touching_the_database(appliance: RunningAppliance) -> None:
    with appliance.client() as client:
        response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json()["ok"] is True


def test_readyz_reports_every_check(appliance: RunningAppliance) -> None:
    with appliance.client() as client:
        response = client.get("/readyz")
    assert response.status_code == 200, response.text
    report = response.json()
    assert report["ok"] is True
    assert set(report["checks"]) == {
        "database_writable",
        "schema_current",
        "disk_free",
        "scheduler",
    }
    assert all(check["ok"] for check in report["checks"].values())
    assert {job["name"] for job in report["jobs"]} == {
        "audit_chain",
        "backup",
        "command_timeouts",
        "domain_event_retention",
        "offline_agents",
        "release_metadata",
        "reload_settings",
        "scheduled_installs",
    }


def test_readyz_turns_503_when_free_disk_falls_below_the_threshold(
    appliance: RunningAppliance,
) -> None:
    free_mib = shutil.disk_usage(appliance.data_dir).free // (1024 * 1024)
    data_dir = str(appliance.data_dir)
    raised = run_cli(
        "settings", "set", "disk_free_min_mb", str(free_mib + 10_000), "--data-dir", data_dir
    )
    assert raised.returncode == 0, raised.stderr
    with appliance.client() as client:
        response = client.get("/readyz")
        assert response.status_code == 503
        disk = response.json()["checks"]["disk_free"]
        assert disk["ok"] is False and "below" in disk["detail"]
        # Liveness is unaffected: the process is fine, it just must not take new work.
        assert client.get("/healthz").status_code == 200
        lowered = run_cli("settings", "set", "disk_free_min_mb", "1", "--data-dir", data_dir)
        assert lowered.returncode == 0, lowered.stderr
        assert client.get("/readyz").status_code == 200


def test_metrics_are_prometheus_text_with_our_series(appliance: RunningAppliance) -> None:
    with appliance.client() as client:
        client.get("/readyz")
        response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    text = response.text
    for series in (
        f"redflag_schema_version {len(load_migrations())}.0",
        "redflag_disk_free_bytes ",
        "redflag_scheduler_heartbeat_age_seconds ",
        'redflag_scheduler_job_runs_total{job="backup"}',
        'redflag_http_requests_total{endpoint="readyz",method="GET",status="200"} 1.0',
    ):
        assert series in text, series


def test_unknown_api_paths_get_the_json_error_shape_and_pages_an_html_page(
    appliance: RunningAppliance,
) -> None:
    with appliance.client() as client:
        response = client.get("/api/v1/no/such/thing")
        page = client.get("/no/such/page")
    assert response.status_code == 404
    assert response.json() == {"ok": False, "error": "Not Found", "errors": [], "status": 404}
    assert page.status_code == 404 and page.headers["content-type"].startswith("text/html")
    assert "There is no such page." in page.text


def test_doctor_passes_on_a_healthy_appliance_and_asks_it_for_readiness(
    appliance: RunningAppliance,
) -> None:
    result = run_cli("doctor", "--data-dir", str(appliance.data_dir))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "[ ok ] appliance" in result.stdout and "/readyz ready" in result.stdout
    assert "all checks passed" in result.stdout


def test_doctor_fails_and_says_why_on_a_tampered_audit_log(appliance: RunningAppliance) -> None:
    data_dir = str(appliance.data_dir)
    assert (
        run_cli("settings", "set", "backup_retention", "7", "--data-dir", data_dir).returncode == 0
    )
    conn = sqlite3.connect(appliance.data_dir / "redflag.db")
    conn.execute("DROP TRIGGER audit_log_no_update")
    conn.execute("UPDATE audit_log SET actor = 'nobody'")
    conn.commit()
    conn.close()
    result = run_cli("doctor", "--data-dir", data_dir)
    assert result.returncode == 1
    assert "[FAIL] audit_chain" in result.stdout and "row 1: contents edited" in result.stdout


def test_scheduled_backup_runs_inside_the_appliance(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    assert run_cli("migrate", "--data-dir", str(data_dir)).returncode == 0
    # Make the backup due now, as if the appliance had been down for a day.
    conn = sqlite3.connect(data_dir / "redflag.db")
    conn.execute(
        "INSERT INTO scheduler_jobs (name, next_run_at) VALUES ('backup', '2000-01-01T00:00:00Z')"
    )
    conn.commit()
    conn.close()
    running = start_appliance(data_dir)
    try:
        job: dict[str, object] = {}
        deadline = time.monotonic() + 20
        with running.client() as client:
            while time.monotonic() < deadline:
                jobs = client.get("/readyz").json()["jobs"]
                job = next(j for j in jobs if j["name"] == "backup")
                if job["runs"] == 1:
                    break
                time.sleep(0.1)
        assert job["runs"] == 1 and job["last_error"] is None, running.log()
        assert job["last_duration_s"] is not None
        assert len(list(data_dir.glob("backups/redflag-*.db"))) == 1
        assert '"event":"backup.created"' in running.log()
    finally:
        running.stop()
