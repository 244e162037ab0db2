"""The benchmark's matrix: which scenarios a selection measures, and which runs may redraw latest.md."""

from bench import reads, scenarios
from bench.scenarios import Scenario

# What `make bench` runs with no flags (scenarios.covers_default_matrix's keyword arguments).
DEFAULT_MATRIX = dict(
    databases=["sqlite", "postgres"],
    transports=list(scenarios.TRANSPORTS),
    workloads=list(scenarios.WORKLOADS),
    concurrency=[16, 64],
    quick=False,
    baseline_included=True,
)


def test_a_plain_run_measures_both_reads_over_rest_only_after_the_writes():
    matrix = scenarios.for_database(
        "postgres", list(scenarios.TRANSPORTS), list(scenarios.WORKLOADS), list(scenarios.CONCURRENCY)
    )
    assert [s.name for s in matrix if s.reads] == [
        "postgres/rest-envoy/list/c16",
        "postgres/rest-envoy/list/c64",
        "postgres/rest-envoy/top/c16",
        "postgres/rest-envoy/top/c64",
    ]
    assert len([s for s in matrix if s.writes]) == 3 * 2 * 2
    assert matrix.index(Scenario("postgres", "rest-envoy", "list", 16)) == 12


def test_read_scenarios_expect_200_write_nothing_and_share_the_rest_ceiling():
    top = Scenario("sqlite", "rest-envoy", "top", 64)
    assert (top.reads, top.writes, top.expected_status) == (True, False, 200)
    assert top.ceiling == "baseline/grpc-envoy/health/c64"


def test_a_grpc_only_selection_has_no_read_scenario():
    assert scenarios.for_database("sqlite", ["grpc-direct"], ["spread", "list"], [16]) == [
        Scenario("sqlite", "grpc-direct", "spread", 16)
    ]


def test_only_a_run_of_the_whole_default_matrix_replaces_latest():
    full = dict(DEFAULT_MATRIX)
    assert scenarios.covers_default_matrix(**full) is True
    assert scenarios.covers_default_matrix(**{**full, "quick": True}) is False
    assert scenarios.covers_default_matrix(**{**full, "workloads": ["list", "top"]}) is False
    assert scenarios.covers_default_matrix(**{**full, "databases": ["sqlite"]}) is False
    assert scenarios.covers_default_matrix(**{**full, "baseline_included": False}) is False


def test_read_paths_are_the_public_routes_with_the_benchmarked_page_sizes(tmp_path):
    written = reads.write_paths("list", ["s1", "s2"], tmp_path)
    assert written.read_text() == (
        "/api/v1/live-stream/s1/chat/superlikes?pageSize=20\n/api/v1/live-stream/s2/chat/superlikes?pageSize=20\n"
    )
    assert reads.path("top", "s1") == "/api/v1/live-stream/s1/chat/top-supporters?limit=10"


def test_each_spread_scenario_is_followed_by_its_repeat_with_more_callers_and_the_reads_stay_last():
    matrix = scenarios.for_database("sqlite", ["rest-envoy"], ["spread", "hot", "list"], [64], [100_000])
    assert [s.name for s in matrix] == [
        "sqlite/rest-envoy/spread/c64",
        "sqlite/rest-envoy/spread/c64/callers-100000",
        "sqlite/rest-envoy/hot/c64",
        "sqlite/rest-envoy/list/c64",
    ]


def test_a_superlike_is_divided_by_the_noop_behind_the_same_config_with_the_same_callers():
    many = Scenario("postgres", "rest-envoy", "spread", 64, edge="no-lua", callers=100_000)
    assert many.noop == "baseline/rest-envoy/noop/c64/edge-no-lua/callers-100000"
    assert many.ceiling == "baseline/grpc-envoy/health/c64"
    # Nothing reads the token on the direct path to the no-op: one no-op serves every callers value.
    assert Scenario("postgres", "grpc-direct", "hot", 16, callers=100_000).noop == "baseline/grpc-direct/noop/c16"


def test_the_noop_runs_every_transport_with_the_full_config_and_repeats_only_envoy_paths_with_more_callers():
    names = [s.name for s in scenarios.noop("full", ["rest-envoy", "grpc-direct"], [16], [100_000])]
    assert names == [
        "baseline/rest-envoy/noop/c16",
        "baseline/rest-envoy/noop/c16/callers-100000",
        "baseline/grpc-direct/noop/c16",
    ]
    assert [s.name for s in scenarios.edge_variant("sqlite", "no-jwt", ["rest-envoy"], ["hot", "top"], [64])] == [
        "sqlite/rest-envoy/hot/c64/edge-no-jwt"
    ]


def test_latest_is_replaced_only_by_a_run_that_also_compares_the_default_callers():
    full = dict(DEFAULT_MATRIX)
    assert scenarios.covers_default_matrix(**full, callers=[2_000, 100_000]) is True
    assert scenarios.covers_default_matrix(**full, callers=[2_000]) is False
    assert scenarios.covers_default_matrix(**full, callers=[100_000, 2_000]) is False
