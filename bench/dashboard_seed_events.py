"""The benchmark's event log: realistic Segment calls, normalised exactly as ingest normalises
them, written with one binary COPY per workspace.

Each workspace has its own traffic (`Traffic`): a count of events per 10-minute bucket over the
seeded days, shaped by the time of day and the day of the week, with noise. Every seq the
workspace ever handed out is accounted for by those buckets; the log keeps only the newest
`log_hours` of them (retention has trimmed the rest), so `EventStream.last_seq` is the total
and the first seq still in the log is far above 1, as in production.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import psycopg

from integrations.ingest.messages import Normaliser
from integrations.models import Event
from integrations.models.deliveries import BUCKET_MINUTES
from integrations.relay.log import COPY_COLUMNS, COPY_TYPES, Message

BUCKET = timedelta(minutes=BUCKET_MINUTES)
BUCKETS_PER_DAY = 24 * 60 // BUCKET_MINUTES

# What the platform's customers emit: (type, name, weight). Each workspace re-weights these,
# so some are mostly experiments, others mostly chat or commerce.
CATALOG = (
    ("track", "Experiment Viewed", 22), ("track", "Conversion Triggered", 6), ("track", "Product Viewed", 10),
    ("track", "Product Added", 4), ("track", "Checkout Started", 2), ("track", "Order Completed", 2),
    ("track", "Signed Up", 1), ("track", "Chat Opened", 5), ("track", "Message Sent", 8),
    ("track", "Email Opened", 3), ("page", "Home", 8), ("page", "Pricing", 3), ("page", "Docs", 4),
    ("screen", "Dashboard", 2), ("identify", "", 8), ("group", "", 1), ("alias", "", 0.3),
)
BROWSERS = (
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Safari/605.1.15",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148",
    "Mozilla/5.0 (X11; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0",
)
LIBRARIES = ({"name": "analytics.js", "version": "next-1.72.0"}, {"name": "analytics-python", "version": "2.4.0"},
             {"name": "analytics-node", "version": "2.1.2"}, {"name": "tributary-python", "version": "0.1.0"})
PLANS = ("free", "starter", "pro", "enterprise")
PRODUCTS = ("Trail Runner 3", "Merino Hoodie", "Water Bottle 750ml", "Headlamp 400", "Rain Shell", "Camp Stool")


def bucket_start(moment: datetime) -> datetime:
    return moment.replace(minute=moment.minute - moment.minute % BUCKET_MINUTES, second=0, microsecond=0)


@dataclass
class Traffic:
    """Events a workspace received per bucket, oldest first; `starts[b]` is the seq before bucket b."""

    first_bucket: datetime
    counts: list[int]
    log_from: int  # the first bucket still in the log
    starts: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        total, self.starts = 0, []
        for count in self.counts:
            self.starts.append(total)
            total += count

    @property
    def last_seq(self) -> int:
        return self.starts[-1] + self.counts[-1]

    @property
    def first_logged_seq(self) -> int:
        return self.starts[self.log_from] + 1

    @property
    def logged(self) -> int:
        return self.last_seq - self.starts[self.log_from]

    def time_of(self, bucket: int) -> datetime:
        return self.first_bucket + bucket * BUCKET

    def bucket_of_seq(self, seq: int) -> int:
        """The bucket whose events include `seq` (binary search over `starts`)."""
        low, high = 0, len(self.starts) - 1
        while low < high:
            middle = (low + high + 1) // 2
            if self.starts[middle] < seq:
                low = middle
            else:
                high = middle - 1
        return low


def shape(moment: datetime) -> float:
    """Relative traffic at a moment: busy working hours (UTC, customers mostly in Europe and
    the Americas), quiet nights, lighter weekends."""
    hour = moment.hour + moment.minute / 60
    daily = 0.35 + 0.65 * max(0.0, math.sin(math.pi * (hour - 5) / 18)) if 5 <= hour <= 23 else 0.35
    return daily * (0.7 if moment.weekday() >= 5 else 1.0)


def traffic_for(*, logged: int, now: datetime, days: int, log_hours: int, rnd: random.Random) -> Traffic:
    """Buckets over `days` ending with the one `now` falls in; exactly `logged` events in the
    last `log_hours`, the same average rate before them."""
    last = bucket_start(now)
    buckets = days * BUCKETS_PER_DAY
    first = last - (buckets - 1) * BUCKET
    log_from = buckets - log_hours * 60 // BUCKET_MINUTES
    weights = [shape(first + b * BUCKET) * rnd.lognormvariate(0, 0.3) for b in range(buckets)]
    logged_weight = sum(weights[log_from:])
    rate = logged / logged_weight
    counts = [_poissonish(w * rate, rnd) for w in weights[:log_from]]
    counts += _apportion(logged, weights[log_from:])
    return Traffic(first, counts, log_from)


def _poissonish(mean: float, rnd: random.Random) -> int:
    if mean < 20:
        # Small tenants have quiet buckets: draw, rather than round a fraction away.
        whole = int(mean)
        return whole + (1 if rnd.random() < mean - whole else 0)
    return max(0, round(rnd.gauss(mean, math.sqrt(mean))))


def _apportion(total: int, weights: list[float]) -> list[int]:
    """`total` split in proportion to `weights`, exactly (largest remainders)."""
    scale = total / sum(weights)
    exact = [w * scale for w in weights]
    counts = [int(x) for x in exact]
    short = total - sum(counts)
    for index in sorted(range(len(exact)), key=lambda i: counts[i] - exact[i])[:short]:
        counts[index] += 1
    return counts


class Emitter:
    """One workspace's visitors and what their SDKs send, before Tributary sees it."""

    def __init__(self, domain: str, users: int, rnd: random.Random) -> None:
        self.rnd = rnd
        self.domain = domain
        self.users = [f"usr_{rnd.randrange(10**7):07d}" for _ in range(users)]
        self.anonymous = [_uuid(rnd) for _ in range(users * 3)]
        self.ips = [f"{rnd.randrange(1, 223)}.{rnd.randrange(256)}.{rnd.randrange(256)}.{rnd.randrange(1, 255)}"
                    for _ in range(200)]
        weights = [weight * rnd.uniform(0.1, 2.0) for _, _, weight in CATALOG]
        self.kinds = rnd.choices(CATALOG, weights, k=4096)
        self.experiments = [(f"exp_{rnd.randrange(10**5):05d}", name) for name in
                            rnd.sample(("Checkout button", "Pricing page", "Onboarding tour", "Hero copy",
                                        "Free shipping banner", "Search ranking", "Chat greeting"), 4)]

    def below(self, n: int) -> int:
        """A random int in [0, n): randrange's job at a third of its cost (the seed's hot path)."""
        return int(self.rnd.random() * n)

    def message(self, *, sent_at: datetime) -> dict[str, Any]:
        rnd, below = self.rnd, self.below
        kind, name, _ = self.kinds[below(4096)]
        browser = kind in ("page", "track") and rnd.random() < 0.7
        anonymous = self.anonymous[below(len(self.anonymous))]
        event: dict[str, Any] = {
            "type": kind,
            "messageId": f"ajs-next-{rnd.getrandbits(128):032x}" if browser else _uuid(rnd),
            "timestamp": (sent_at - timedelta(milliseconds=20 + below(7980))).isoformat(),
            "context": self._context(browser, name),
        }
        if kind == "alias" or rnd.random() < 0.65:
            event["userId"] = self.users[below(len(self.users))]
        if kind != "alias":
            event["anonymousId"] = anonymous
        else:
            event["previousId"] = anonymous
        self._fill(kind, name, event)
        return event

    def _context(self, browser: bool, name: str) -> dict[str, Any]:
        rnd, below = self.rnd, self.below
        if not browser:
            return {"library": LIBRARIES[1 + below(3)], "ip": self.ips[below(200)]}
        path = "/" + (name or "app").lower().replace(" ", "-")
        return {
            "library": LIBRARIES[0], "ip": self.ips[below(200)], "locale": "en-US",
            "userAgent": BROWSERS[below(len(BROWSERS))],
            "page": {"path": path, "url": f"https://{self.domain}{path}", "title": f"{name or 'App'} | {self.domain}",
                     "referrer": "https://www.google.com/" if rnd.random() < 0.3 else ""},
        }

    def _fill(self, kind: str, name: str, event: dict[str, Any]) -> None:
        below = self.below
        if kind == "track":
            event["event"] = name
            event["properties"] = self._properties(name)
        elif kind in ("page", "screen"):
            event["name"] = name
            event["properties"] = {"path": f"/{name.lower()}", "category": "marketing" if kind == "page" else "app"}
        elif kind == "identify":
            user = event.get("userId", "visitor")
            event["traits"] = {"email": f"{user}@mail.example", "plan": PLANS[below(4)],
                               "createdAt": f"2025-0{1 + below(9)}-1{below(10)}T09:00:00Z",
                               "company": {"name": f"Company {below(5000)}"}}
        elif kind == "group":
            event["groupId"] = f"org_{below(10**5):05d}"
            event["traits"] = {"name": f"Org {below(10**5)}", "employees": 1 + below(4999),
                               "industry": "Retail"}

    def _properties(self, name: str) -> dict[str, Any]:
        rnd, below = self.rnd, self.below
        if name in ("Experiment Viewed", "Conversion Triggered"):
            experiment_id, experiment = self.experiments[below(4)]
            variation = below(3)
            properties: dict[str, Any] = {"experiment_id": experiment_id, "experiment_name": experiment,
                                          "variation_id": f"v{variation}",
                                          "variation_name": ("Control", "Variant A", "Variant B")[variation]}
            if name == "Conversion Triggered":
                properties.update(conversion_id=f"cv_{below(10**6)}", conversion_type="purchase")
            return properties
        if name in ("Product Viewed", "Product Added", "Checkout Started", "Order Completed"):
            lines = [(round(rnd.uniform(5, 180), 2), 1 + below(3)) for _ in range(1 + below(3))]
            products = [{"product_id": f"p{below(10**4)}", "name": PRODUCTS[below(len(PRODUCTS))],
                         "price": price, "quantity": quantity} for price, quantity in lines]
            total = round(sum(price * quantity for price, quantity in lines), 2)
            return {"order_id": f"o-{below(10**9):09d}", "revenue": total, "currency": "EUR",
                    "products": products}
        if name in ("Chat Opened", "Message Sent"):
            return {"conversation_id": f"c_{below(10**7)}", "channel": ("web", "ios", "android")[below(3)],
                    "characters": 4 + below(396)}
        return {"campaign": f"nov-{below(40)}", "source": "newsletter"}


def _uuid(rnd: random.Random) -> str:
    text = f"{rnd.getrandbits(128):032x}"
    return f"{text[:8]}-{text[8:12]}-4{text[13:16]}-a{text[17:20]}-{text[20:]}"


def messages_for(traffic: Traffic, emitter: Emitter, first_bucket: int, now: datetime) -> Iterator[Message]:
    """The workspace's events from `first_bucket` on, in seq order: each bucket's events arrive
    in requests of 1 to 40, normalised per request as the ingest API does."""
    rnd = emitter.rnd
    for bucket in range(first_bucket, len(traffic.counts)):
        count = traffic.counts[bucket]
        start = traffic.time_of(bucket)
        span = min(BUCKET, now - start).total_seconds()
        moments = sorted(rnd.random() * span for _ in range(max(1, count // 20)))
        left, index = count, 0
        while left > 0:
            size = min(left, 1 + emitter.below(40))
            received = start + timedelta(seconds=moments[min(index, len(moments) - 1)])
            sent_at = received - timedelta(milliseconds=30 + emitter.below(370))
            normalise = Normaliser(received_at=received, sent_at=sent_at.isoformat())
            for _ in range(size):
                yield normalise(emitter.message(sent_at=sent_at))
            left -= size
            index += 1


def copy_events(connection: psycopg.Connection[Any], workspace_id: int, traffic: Traffic, emitter: Emitter,
                now: datetime) -> int:
    """COPY the workspace's logged events (binary, the relay's own column list and types)."""
    statement = f"COPY {Event._meta.db_table} ({', '.join(COPY_COLUMNS)}) FROM STDIN (FORMAT BINARY)"
    seq = traffic.first_logged_seq
    with connection.cursor() as cursor, cursor.copy(statement) as copy:
        copy.set_types(COPY_TYPES)
        for m in messages_for(traffic, emitter, traffic.log_from, now):
            copy.write_row((workspace_id, seq, m.message_id, m.type, m.name, m.user_id, m.body, len(m.body),
                            m.received_at, None))
            seq += 1
    return seq - traffic.first_logged_seq
