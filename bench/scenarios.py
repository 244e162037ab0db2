"""What the benchmark measures: the workloads, one scenario per database × transport × workload ×
concurrency, and which runs cover the whole default matrix (only those redraw latest.md/latest.png)."""

from __future__ import annotations

from dataclasses import dataclass

DATABASES = ("sqlite", "postgres")
TRANSPORTS = ("rest-envoy", "grpc-envoy", "grpc-direct")
# spread/hot send superlikes; list/top read them back through the REST routes.
WRITE_WORKLOADS = ("spread", "hot")
READ_WORKLOADS = ("list", "top")
WORKLOADS = WRITE_WORKLOADS + READ_WORKLOADS
CONCURRENCY = (16, 64)
# The read routes are measured over REST only: they are what external apps call, and the gRPC
# methods behind them are the same server code minus the transcoder.
READ_TRANSPORTS = ("rest-envoy",)


@dataclass(frozen=True)
class Scenario:
    db: str  # sqlite | postgres | baseline (no database work)
    transport: str  # rest-envoy | grpc-envoy | grpc-direct
    workload: str  # spread | hot | list | top | health | invalid
    concurrency: int

    @property
    def name(self) -> str:
        return f"{self.db}/{self.transport}/{self.workload}/c{self.concurrency}"

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
        """The no-op call on the same path: health direct for direct gRPC, health through Envoy otherwise."""
        path = "grpc-direct" if self.transport == "grpc-direct" else "grpc-envoy"
        return f"baseline/{path}/health/c{self.concurrency}"


def baseline(concurrency: list[int], *, with_error_path: bool) -> list[Scenario]:
    """The ceilings (health check through Envoy and direct) and, optionally, the REST error path."""
    scenarios: list[Scenario] = []
    for c in concurrency:
        scenarios += [Scenario("baseline", "grpc-envoy", "health", c), Scenario("baseline", "grpc-direct", "health", c)]
        if with_error_path:
            scenarios.append(Scenario("baseline", "rest-envoy", "invalid", c))
    return scenarios


def for_database(db: str, transports: list[str], workloads: list[str], concurrency: list[int]) -> list[Scenario]:
    """Every write workload on every transport, then the read workloads on the REST transport: the reads
    run last, on the history the writes have just grown."""
    scenarios = [
        Scenario(db, transport, workload, c)
        for transport in transports
        for workload in workloads
        if workload in WRITE_WORKLOADS
        for c in concurrency
    ]
    scenarios += [
        Scenario(db, transport, workload, c)
        for transport in transports
        if transport in READ_TRANSPORTS
        for workload in workloads
        if workload in READ_WORKLOADS
        for c in concurrency
    ]
    return scenarios


def covers_default_matrix(
    *,
    databases: list[str],
    transports: list[str],
    workloads: list[str],
    concurrency: list[int],
    quick: bool,
    baseline_included: bool,
) -> bool:
    """True for a run that measured at least everything a plain `make bench` does."""
    return (
        not quick
        and baseline_included
        and set(DATABASES) <= set(databases)
        and set(TRANSPORTS) <= set(transports)
        and set(WORKLOADS) <= set(workloads)
        and set(CONCURRENCY) <= set(concurrency)
    )
