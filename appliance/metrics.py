"""Prometheus metrics: one registry per app (no global state), read at scrape time."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from appliance.scheduler import Scheduler


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.http_requests = Counter(
            "redflag_http_requests",
            "HTTP requests answered, by endpoint and status code",
            ["endpoint", "method", "status"],
            registry=self.registry,
        )
        self.http_latency = Histogram(
            "redflag_http_request_duration_seconds",
            "Time to answer HTTP requests, by endpoint",
            ["endpoint"],
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
            registry=self.registry,
        )

    def watch(self, collector: Collector) -> None:
        self.registry.register(collector)


class SchedulerCollector(Collector):
    """Each job's last run, duration and failures, plus the loop's heartbeat."""

    def __init__(self, scheduler: Scheduler):
        self.scheduler = scheduler

    def collect(self) -> Iterable[Metric]:
        heartbeat = GaugeMetricFamily(
            "redflag_scheduler_heartbeat_age_seconds", "Seconds since the scheduler loop ran"
        )
        heartbeat.add_metric([], self.scheduler.heartbeat_age())
        yield heartbeat
        duration = GaugeMetricFamily(
            "redflag_scheduler_job_last_duration_seconds",
            "Duration of the job's last run",
            labels=["job"],
        )
        failed = GaugeMetricFamily(
            "redflag_scheduler_job_last_run_failed",
            "1 when the job's last run failed",
            labels=["job"],
        )
        runs = CounterMetricFamily("redflag_scheduler_job_runs", "Job runs", labels=["job"])
        failures = CounterMetricFamily(
            "redflag_scheduler_job_failures", "Job runs that failed", labels=["job"]
        )
        for status in self.scheduler.status.values():
            if status.last_duration_s is not None:
                duration.add_metric([status.name], status.last_duration_s)
            failed.add_metric([status.name], float(status.last_error is not None))
            runs.add_metric([status.name], status.runs)
            failures.add_metric([status.name], status.failures)
        yield from (duration, failed, runs, failures)


class GaugeCollector(Collector):
    """Gauges whose values are computed when Prometheus scrapes."""

    def __init__(self, gauges: dict[str, tuple[str, Callable[[], float | None]]]):
        self.gauges = gauges

    def collect(self) -> Iterable[Metric]:
        for name, (documentation, read) in self.gauges.items():
            value = read()
            if value is not None:
                family = GaugeMetricFamily(name, documentation)
                family.add_metric([], value)
                yield family


class CountsCollector(Collector):
    """A labelled counter (or gauge) whose values live in a dict somewhere else."""

    def __init__(
        self,
        name: str,
        documentation: str,
        label: str,
        read: Callable[[], dict[str, int]],
        *,
        gauge: bool = False,
    ):
        self.name = name
        self.documentation = documentation
        self.label = label
        self.read = read
        self.family = GaugeMetricFamily if gauge else CounterMetricFamily

    def collect(self) -> Iterable[Metric]:
        family = self.family(self.name, self.documentation, labels=[self.label])
        for key, value in sorted(self.read().items()):
            family.add_metric([key], value)
        yield family
