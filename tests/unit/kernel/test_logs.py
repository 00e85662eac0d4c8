"""Operational logs are one sanitised JSON object per line, and floods are sampled."""

import io
import json
import logging
import re

import pytest

from kernel.logs import JsonLineFormatter, SampledLog, configure_logging, log_event
from kernel.sanitise import REDACTED


@pytest.fixture
def captured(request):
    """A logger writing through JsonLineFormatter into a buffer, and a reader of its lines."""
    buffer = io.StringIO()
    handler = logging.StreamHandler(buffer)
    handler.setFormatter(JsonLineFormatter())
    logger = logging.getLogger(f"redflag.test.{request.node.name}")
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    logger.propagate = False

    def lines() -> list[str]:
        return buffer.getvalue().splitlines()

    yield logger, lines
    logger.removeHandler(handler)


@pytest.fixture
def restore_root_logging():
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    uvicorn = {
        name: logging.getLogger(name) for name in ("uvicorn", "uvicorn.error", "uvicorn.access")
    }
    saved = {name: (list(lg.handlers), lg.propagate, lg.level) for name, lg in uvicorn.items()}
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    for name, (lg_handlers, propagate, lg_level) in saved.items():
        uvicorn[name].handlers[:] = lg_handlers
        uvicorn[name].propagate = propagate
        uvicorn[name].setLevel(lg_level)


def test_a_record_is_one_line_of_json_with_the_standard_keys(captured):
    logger, lines = captured
    log_event(logger, logging.INFO, "agent.registered", "agent registered", agent_id="a-1")
    [line] = lines()
    entry = json.loads(line)
    assert list(entry) == ["ts", "level", "logger", "event", "msg", "agent_id"]
    assert entry["level"] == "info"
    assert entry["event"] == "agent.registered"
    assert entry["msg"] == "agent registered"
    assert entry["agent_id"] == "a-1"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", entry["ts"])


def test_hostile_fields_and_message_still_give_exactly_one_line(captured):
    logger, lines = captured
    hostile = 'x\n{"level":"info","event":"admin.login"}\r\x1b[2J\x00\u2028\u202e'
    log_event(logger, logging.WARNING, "checkin.rejected", hostile, hostname=hostile, n=[hostile])
    [line] = lines()
    entry = json.loads(line)
    for value in (entry["msg"], entry["hostname"], entry["n"][0]):
        assert value == 'x\\n{"level":"info","event":"admin.login"}\\r\\u2028\\u202e'


def test_a_password_field_and_a_bearer_token_in_the_message_are_redacted(captured):
    logger, lines = captured
    log_event(
        logger,
        logging.INFO,
        "http.request",
        "called with Authorization: Bearer abc123secret",
        password="hunter2",
        user="bob",
    )
    [line] = lines()
    assert "hunter2" not in line
    assert "abc123secret" not in line
    entry = json.loads(line)
    assert entry["password"] == REDACTED
    assert entry["user"] == "bob"


def test_plain_logger_calls_with_extra_fields_are_structured_too(captured):
    logger, lines = captured
    logger.info("job done", extra={"event": "scheduler.job_done", "fields": {"job": "backup"}})
    logger.info("no event given")
    first, second = (json.loads(line) for line in lines())
    assert (first["event"], first["job"]) == ("scheduler.job_done", "backup")
    assert second["event"] == "log"


def test_exception_info_is_included_and_sanitised(captured):
    logger, lines = captured
    try:
        raise ValueError("bad input\n\x1b[31mforged line password=hunter2")
    except ValueError as error:
        log_event(logger, logging.ERROR, "job.failed", "job failed", exc_info=error, job="x")
    [line] = lines()
    entry = json.loads(line)
    assert "Traceback" in entry["exc"]
    assert "ValueError: bad input\\nforged line password=[REDACTED]" in entry["exc"]
    assert "hunter2" not in line


def test_a_long_traceback_keeps_its_end(captured):
    logger, lines = captured
    try:
        raise RuntimeError("x" * 50_000 + " the end")
    except RuntimeError:
        logger.exception("boom", extra={"event": "job.failed"})
    entry = json.loads(lines()[0])
    assert entry["exc"].startswith("[…")
    assert entry["exc"].endswith(" the end")
    assert len(entry["exc"]) < 10_000


def test_fields_cannot_overwrite_the_standard_keys(captured):
    logger, lines = captured
    logger.info("real", extra={"event": "real.event", "fields": {"event": "fake", "msg": "x"}})
    entry = json.loads(lines()[0])
    assert (entry["event"], entry["msg"]) == ("real.event", "real")
    assert (entry["field_event"], entry["field_msg"]) == ("fake", "x")


def test_a_field_that_cannot_be_printed_becomes_a_placeholder(captured):
    class Hostile:
        def __str__(self):
            raise RuntimeError("no str")

        def __repr__(self):
            return "<Hostile\n\x1b[31m>"

    logger, lines = captured
    log_event(logger, logging.INFO, "odd.field", thing=Hostile(), nan=float("nan"))
    entry = json.loads(lines()[0])
    assert entry["thing"] == "<Hostile\\n>"
    assert entry["nan"] == "nan"


def test_bad_format_arguments_do_not_lose_the_record():
    # Formatted directly: pytest's own capture handler would fail on this record.
    record = logging.LogRecord("redflag", logging.INFO, __file__, 1, "count %d", ("x",), None)
    record.event = "odd.args"
    entry = json.loads(JsonLineFormatter().format(record))
    assert entry["event"] == "odd.args"
    assert "count %d" in entry["msg"]


def test_a_huge_record_is_shrunk_to_a_bounded_line(captured):
    logger, lines = captured
    log_event(logger, logging.INFO, "big", **{f"f{i}": "x" * 5000 for i in range(150)})
    [line] = lines()
    assert len(line) < 70_000
    assert json.loads(line)["f0"].startswith("x" * 256 + "…[+")


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_sampled_log_emits_at_most_n_per_window_then_a_summary(captured):
    logger, lines = captured
    clock = FakeClock()
    sampled = SampledLog(logger, per_key_per_minute=3, clock=clock)
    results = [
        sampled.log("bad_signature", logging.WARNING, "checkin.rejected", "bad", n=i)
        for i in range(10)
    ]
    assert results == [True] * 3 + [False] * 7
    assert len(lines()) == 3
    clock.now += 59.9
    assert not sampled.log("bad_signature", logging.WARNING, "checkin.rejected", "bad")
    clock.now += 0.1
    assert sampled.log("bad_signature", logging.WARNING, "checkin.rejected", "bad", n=10)
    summary, record = (json.loads(line) for line in lines()[3:])
    assert summary["event"] == "log.suppressed"
    assert (summary["key"], summary["suppressed"]) == ("bad_signature", 8)
    assert summary["level"] == "warning"
    assert (record["event"], record["n"]) == ("checkin.rejected", 10)


def test_sampled_log_counts_each_key_on_its_own(captured):
    logger, lines = captured
    sampled = SampledLog(logger, per_key_per_minute=1, clock=FakeClock())
    assert sampled.log("a", logging.INFO, "reject.a")
    assert sampled.log("b", logging.INFO, "reject.b")
    assert not sampled.log("a", logging.INFO, "reject.a")
    assert len(lines()) == 2


def test_sampled_log_forgets_the_oldest_key_but_reports_its_count(captured):
    logger, lines = captured
    sampled = SampledLog(logger, per_key_per_minute=1, clock=FakeClock(), max_keys=2)
    for key in ("a", "a", "b", "c"):
        sampled.log(key, logging.INFO, "reject")
    events = [json.loads(line) for line in lines()]
    assert [e["event"] for e in events] == ["reject", "reject", "log.suppressed", "reject"]
    assert (events[2]["key"], events[2]["suppressed"]) == ("a", 1)
    assert len(sampled._windows) == 2


def test_sampled_log_flush_reports_pending_counts_once(captured):
    logger, lines = captured
    sampled = SampledLog(logger, per_key_per_minute=1, clock=FakeClock())
    for _ in range(4):
        sampled.log("body_too_large", logging.INFO, "http.rejected")
    sampled.flush()
    sampled.flush()
    summaries = [json.loads(line) for line in lines()[1:]]
    assert [(s["event"], s["suppressed"]) for s in summaries] == [("log.suppressed", 3)]
    assert not sampled.log("body_too_large", logging.INFO, "http.rejected")


@pytest.mark.usefixtures("restore_root_logging")
def test_configure_logging_is_idempotent():
    stream = io.StringIO()
    configure_logging("info", stream)
    configure_logging("debug", stream)
    root = logging.getLogger()
    assert len(root.handlers) == 1
    assert isinstance(root.handlers[0].formatter, JsonLineFormatter)
    assert root.level == logging.DEBUG
    logging.getLogger("redflag.anything").debug("hello")
    assert json.loads(stream.getvalue())["msg"] == "hello"


@pytest.mark.usefixtures("restore_root_logging")
def test_configure_logging_routes_uvicorn_through_the_root_handler():
    access = logging.getLogger("uvicorn.access")
    access.addHandler(logging.NullHandler())
    access.propagate = False
    stream = io.StringIO()
    configure_logging("info", stream)
    assert access.handlers == []
    assert access.propagate
    access.info('%s - "%s %s HTTP/%s" %d', "10.0.0.1", "GET", "/x?token=abc", "1.1", 200)
    entry = json.loads(stream.getvalue())
    assert entry["logger"] == "uvicorn.access"
    assert "abc" not in entry["msg"]


@pytest.mark.usefixtures("restore_root_logging")
def test_configure_logging_rejects_an_unknown_level():
    with pytest.raises(ValueError, match="unknown log level 'loud'"):
        configure_logging("loud", io.StringIO())
