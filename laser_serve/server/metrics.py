"""Prometheus metrics (prefix laser_, base units, low-cardinality labels only)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 25, 60, 120, 300)
REWARD_BUCKETS = (-10, -5, -2, -1, -0.5, 0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1, 2, 5)


class Metrics:
    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        self.requests = Counter(
            "laser_requests",
            "gRPC requests by method and status code.",
            ["method", "code"],
            registry=r,
        )
        self.request_duration = Histogram(
            "laser_request_duration_seconds",
            "gRPC request latency.",
            ["method"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.stage_duration = Histogram(
            "laser_stage_duration_seconds",
            "Time in each Rerank stage.",
            ["stage"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.stage_cut = Counter(
            "laser_stage_cut",
            "Stages cut short by a client deadline or cancellation.",
            ["stage"],
            registry=r,
        )
        self.rm_selected = Counter(
            "laser_rm_selected",
            "Times a reward model was chosen to score.",
            ["reward_model", "policy"],
            registry=r,
        )
        self.rm_score_duration = Histogram(
            "laser_rm_score_duration_seconds",
            "Seconds one RM spent scoring a request.",
            ["reward_model"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.feedback = Counter(
            "laser_feedback",
            "Feedback by credited RM and outcome.",
            ["reward_model", "outcome"],
            registry=r,
        )
        self.feedback_reward = Histogram(
            "laser_feedback_reward",
            "Raw rewards received, by credited RM.",
            ["reward_model"],
            buckets=REWARD_BUCKETS,
            registry=r,
        )
        self.selector_pulls = Gauge(
            "laser_selector_pulls",
            "Selector updates applied per RM.",
            ["reward_model"],
            registry=r,
        )
        self.pending = Gauge(
            "laser_pending_selections", "Selections waiting for feedback.", registry=r
        )
        self.inflight = Gauge("laser_inflight_requests", "Requests being served.", registry=r)
        self.generated_tokens = Counter(
            "laser_generated_tokens", "Tokens generated for candidates.", registry=r
        )
        self.rerank_tasks = Counter(
            "laser_rerank_tasks", "Rerank requests by task tag.", ["task"], registry=r
        )

    def serve(self, host: str, port: int) -> int:
        """Expose /metrics on its own HTTP port (0 picks a free one); returns the port."""
        server, _ = start_http_server(port, addr=host, registry=self.registry)
        return int(server.server_port)
