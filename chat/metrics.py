"""Operational metrics: one prometheus_client registry per process (per `App`), and its instruments.

Every room that counts something (the inbox pipeline, the webhook, the outbox dispatcher, the planner)
is handed the same `Metrics` by the assembly and calls its instruments at clear points; the console
serves `registry` at /metrics. A registry of its own (not prometheus_client's global one) lets several
apps live in one process (tests) without sharing counts. What is read from the store at scrape time
(inbox and outbox depth, the business gauges) is a collector the console adds (console/metrics.py).

Labels never carry personal data: only outcomes, results, statuses and the replica's name.
"""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

# Update handling from receipt to answered: most take tens of milliseconds, a loaded replica seconds.
LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)

UPDATE_OUTCOMES = ("handled", "failed", "undelivered", "repeated", "refused")
SEND_RESULTS = ("ok", "retry", "429", "403", "error", "unknown")


class Metrics:
    """The instruments of one process, all in `registry`."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry(auto_describe=True)
        r = self.registry
        self.updates = Counter(
            "loyalbot_updates", "Telegram updates by outcome: handled (answered), failed (an error, answered "
            "with an apology), undelivered (its replies met 5xx/429 past the retries: handled again later), "
            "repeated (a redelivered update, ignored), refused (a webhook call refused: wrong "
            "secret, bad body).", ["outcome"], registry=r)
        self.update_latency = Histogram(
            "loyalbot_update_latency_seconds", "From an update's receipt (recorded in the inbox) to its "
            "replies sent.", buckets=LATENCY_BUCKETS, registry=r)
        self.sends = Counter(
            "loyalbot_outbox_sends", "Outbox sends by result: ok, retry (a transient failure, tried again later), "
            "429 (Telegram asked to wait), 403 (the member blocked the bot), error (refused or given up), "
            "unknown (no answer: not resent).", ["result"], registry=r)
        self.rate_limited = Counter(
            "loyalbot_telegram_429", "Bot API calls answered 429 Too Many Requests, by who made them (outbox, "
            "replies).", ["source"], registry=r)
        self.relay_queue = Gauge(
            "loyalbot_relay_queue", "Posts waiting in this replica's staff-group relay.", registry=r)
        self.planner_leader = Gauge(
            "loyalbot_planner_leader", "1 while this replica holds the planner lease (plans the schedules), "
            "else 0.", ["instance"], registry=r)
        for outcome in UPDATE_OUTCOMES:  # every series exists from the start, so rate() sees its first step
            self.updates.labels(outcome=outcome)
        for result in SEND_RESULTS:
            self.sends.labels(result=result)
        for source in ("outbox", "replies"):
            self.rate_limited.labels(source=source)

    def follow_relay(self, pending: Callable[[], int]) -> None:
        """Report the relay's queue at each scrape (`pending` is read then, never stored)."""
        self.relay_queue.set_function(lambda: float(pending()))


__all__ = ["LATENCY_BUCKETS", "Metrics", "SEND_RESULTS", "UPDATE_OUTCOMES"]
