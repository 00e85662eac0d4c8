"""Token buckets, keyed (per agent, per IP, per user), with Retry-After hints."""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass


@dataclass
class _Bucket:
    tokens: float
    updated: float


class RateLimiter:
    """`rate` tokens a second up to `burst`; memory bounded by evicting idle keys."""

    def __init__(
        self,
        rate: float,
        burst: float,
        *,
        max_keys: int = 100_000,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.rate = rate
        self.burst = burst
        self.max_keys = max_keys
        self.clock = clock
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()
        self.rejected = 0

    def acquire(self, key: str, cost: float = 1.0) -> float:
        """Take `cost` tokens; returns 0 when allowed, else seconds to wait."""
        now = self.clock()
        bucket = self._buckets.pop(key, None) or _Bucket(self.burst, now)
        bucket.tokens = min(self.burst, bucket.tokens + (now - bucket.updated) * self.rate)
        bucket.updated = now
        self._buckets[key] = bucket
        if len(self._buckets) > self.max_keys:
            self._buckets.popitem(last=False)
        if bucket.tokens >= cost:
            bucket.tokens -= cost
            return 0.0
        self.rejected += 1
        return (cost - bucket.tokens) / self.rate

    def remaining(self, key: str) -> float:
        """Tokens left for `key` right now (after its last acquire)."""
        bucket = self._buckets.get(key)
        if bucket is None:
            return self.burst
        return min(self.burst, bucket.tokens + (self.clock() - bucket.updated) * self.rate)

    def pacing_headers(self, key: str) -> dict[str, str]:
        """Tell a well-behaved client how to stay under the limit without a 429."""
        return {
            "X-RateLimit-Remaining": str(int(self.remaining(key))),
            "X-RateLimit-Rate": f"{self.rate:.4f}",
        }

    @staticmethod
    def retry_after_header(wait_s: float) -> dict[str, str]:
        return {"Retry-After": str(max(1, math.ceil(wait_s)))}
