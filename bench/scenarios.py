"""What the benchmark measures: the workloads, one scenario per database × transport × workload ×
concurrency (× edge variant × number of callers), and which runs cover the whole default matrix
(only those redraw latest.md/latest.png)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

DATABASES = ("sqlite", "postgres")
TRANSPORTS = ("rest-envoy", "grpc-envoy", "grpc-direct")
ENVOY_TRANSPORTS = ("rest-envoy", "grpc-envoy")
# spread/hot send superlikes; list/top read them back through the REST routes.
WRITE_WORKLOADS = ("spread", "hot")
READ_WORKLOADS = ("list", "top")
WORKLOADS = WRITE_WORKLOADS + READ_WORKLOADS
CONCURRENCY = (16, 64)
# The read routes are measured over REST only: they are what external apps call, and the gRPC
# methods behind them are the same server code minus the transcoder.
READ_TRANSPORTS = ("rest-envoy",)
# The callers (distinct senders, one token each) the load goes round: the first is the one every
# scenario uses; the others repeat the write scenarios (and the no-op through Envoy) to show what
# many callers cost. 100,000 is more than the server's and Envoy's verified-token caches hold.
CALLERS = (2_000, 100_000)
# The workloads repeated with more callers: a caller's token costs the same on one stream or many.
CALLERS_WORKLOADS = ("spread",)
FULL_EDGE = "full"


@dataclass(frozen=True)
class Scenario:
    db: str  # sqlite | postgres | baseline (no database work)
    transport: str  # rest-envoy | grpc-envoy | grpc-direct
    workload: str  # spread | hot | list | top | health | noop | invalid
    concurrency: int
    # The Envoy config: the rendered one ("full"), or a copy without some filters (edge_variants.py).
    edge: str = FULL_EDGE
    # Distinct callers; None: the run's first --callers value, the one every scenario uses.
    callers: int | None = None

    @property
    def name(self) -> str:
        name = f"{self.db}/{self.transport}/{self.workload}/c{self.concurrency}"
        if self.edge != FULL_EDGE:
            name += f"/edge-{self.edge}"
        if self.callers is not None:
            name += f"/callers-{self.callers}"
        return name

    @property
    def writes(self) -> bool:
        return self.workload in WRITE_WORKLOADS

    @property
    def reads(self) -> bool:
        return self.workload in READ_WORKLOADS

    @property
    def expected_status(self) -> int:
        return 400 if self.workload == "invalid" else 200

    @property
    def ceiling(self) -> str:
        """The gRPC health check on the same path (direct for direct gRPC, through Envoy otherwise),
        with the full config: the second reference."""
        path = "grpc-direct" if self.transport == "grpc-direct" else "grpc-envoy"
        return f"baseline/{path}/health/c{self.concurrency}"

    @property
    def noop(self) -> str:
        """The no-op SendSuperlike server behind the same path, config and callers: the reference."""
        callers = None if self.transport == "grpc-direct" else self.callers  # no token is read there
        return Scenario("baseline", self.transport, "noop", self.concurrency, self.edge, callers).name


def baseline(concurrency: list[int], *, with_error_path: bool) -> list[Scenario]:
    """The health-check references (through Envoy and direct) and, optionally, the REST error path:
    measured on the real server, before the first database's scenarios."""
    scenarios: list[Scenario] = []
    for c in concurrency:
        scenarios += [Scenario("baseline", "grpc-envoy", "health", c), Scenario("baseline", "grpc-direct", "health", c)]
        if with_error_path:
            scenarios.append(Scenario("baseline", "rest-envoy", "invalid", c))
    return scenarios


def noop(
    edge: str,
    transports: list[str],
    concurrency: list[int],
    extra_callers: Sequence[int],
) -> list[Scenario]:
    """The no-op server's scenarios for one edge config: every transport (with the full config) or the
    variant's transports, at the first callers value, and through Envoy at every other one."""
    scenarios: list[Scenario] = []
    for transport in transports:
        for c in concurrency:
            scenarios.append(Scenario("baseline", transport, "noop", c, edge))
            if transport in ENVOY_TRANSPORTS:
                scenarios += [Scenario("baseline", transport, "noop", c, edge, n) for n in extra_callers]
    return scenarios


def for_database(
    db: str,
    transports: list[str],
    workloads: list[str],
    concurrency: list[int],
    extra_callers: Sequence[int] = (),
    callers_workloads: Sequence[str] = CALLERS_WORKLOADS,
) -> list[Scenario]:
    """Every write workload on every transport (each of `callers_workloads` followed by the same at
    every other callers value), then the read workloads on the REST transport: the reads run last,
    on the history the writes have just grown."""
    scenarios: list[Scenario] = []
    for transport in transports:
        for workload in workloads:
            if workload not in WRITE_WORKLOADS:
                continue
            for c in concurrency:
                scenarios.append(Scenario(db, transport, workload, c))
                if workload in callers_workloads:
                    scenarios += [Scenario(db, transport, workload, c, callers=n) for n in extra_callers]
    scenarios += [
        Scenario(db, transport, workload, c)
        for transport in transports
        if transport in READ_TRANSPORTS
        for workload in workloads
        if workload in READ_WORKLOADS
        for c in concurrency
    ]
    return scenarios


def edge_variant(
    db: str, edge: str, transports: list[str], workloads: list[str], concurrency: list[int]
) -> list[Scenario]:
    """The write workloads again behind an edge variant (its no-op twins run in the no-op phase)."""
    return [
        Scenario(db, transport, workload, c, edge)
        for transport in transports
        for workload in workloads
        if workload in WRITE_WORKLOADS
        for c in concurrency
    ]


def covers_default_matrix(
    *,
    databases: list[str],
    transports: list[str],
    workloads: list[str],
    concurrency: list[int],
    quick: bool,
    baseline_included: bool,
    callers: Sequence[int] = CALLERS,
) -> bool:
    """True for a run that measured at least everything a plain `make bench` does."""
    return (
        not quick
        and baseline_included
        and set(DATABASES) <= set(databases)
        and set(TRANSPORTS) <= set(transports)
        and set(WORKLOADS) <= set(workloads)
        and set(CONCURRENCY) <= set(concurrency)
        and bool(callers)
        and callers[0] == CALLERS[0]
        and set(CALLERS) <= set(callers)
    )
