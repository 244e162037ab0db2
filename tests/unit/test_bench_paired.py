"""The benchmark's paired runs (--paired): each run divided by its no-op twin's run of the same round,
a round's runs joined to the scenario's earlier ones, and the machine's stolen CPU per run."""

from types import SimpleNamespace

from bench import phases, procstat
from bench.report_tables import cpu_table, main_table, noop_ratio, noop_twin
from bench.run_summary import summarize_runs

NOOP = "baseline/rest-envoy/noop/c64"
SPREAD = "postgres/rest-envoy/spread/c64"


def run(rps: float, pair: str | None = None, *, server_ms: float = 0.5) -> dict:
    measured = {
        "rps": rps,
        "requests": int(rps * 10),
        "latency_ms": {"p50": 10.0, "p90": 20.0, "p99": 30.0},
        "socket_errors": 0,
        "non_2xx": 0,
        "superlikes_written": 0,
        "cpu_cores": {"server": 0.9, "envoy": 0.5, "postgres": 0.4, "load_tool": 0.1},
        "cpu_ms_per_request": {"server": server_ms, "envoy": 0.3, "postgres": 0.2, "load_tool": 0.05},
        "machine_cores": {"busy": 1.9, "stolen": 0.25},
        "memory": {"server_rss_peak_kb": 100_000},
        "problems": [],
    }
    if pair is not None:
        measured["pair"] = pair
    return measured


def scenario(name: str, runs: list[dict], **fields) -> dict:
    db, transport, workload, concurrency = name.split("/")
    record = {
        "name": name,
        "db": db,
        "transport": transport,
        "workload": workload,
        "concurrency": int(concurrency[1:]),
        "edge": "full",
        "callers_extra": False,
        "expected_status": 200,
        "noop": None if db == "baseline" else NOOP,
        "ceiling": None,
        "runs": runs,
        "summary": summarize_runs(runs),
    }
    record.update(fields)
    return record


def test_each_paired_run_is_divided_by_its_twins_run_of_the_same_round():
    # The machine's speed changes between rounds: the rounds' ratios are 0.60, 0.50 and 0.40; the
    # medians (3,000 and 1,200) would have said 0.40.
    noop = scenario(NOOP, [run(4000, "postgres#1"), run(2000, "postgres#2"), run(3000, "postgres#3")])
    spread = scenario(SPREAD, [run(2400, "postgres#1"), run(1000, "postgres#2"), run(1200, "postgres#3")])
    by_name = {NOOP: noop, SPREAD: spread}

    assert noop_ratio(spread, by_name) == "0.50"


def test_a_paired_scenario_sees_only_its_own_databases_rounds_of_the_twin():
    noop = scenario(
        NOOP,
        [run(1000, "sqlite#1", server_ms=0.2), run(3000, "postgres#1", server_ms=0.3), run(3300, "postgres#2")],
    )
    spread = scenario(SPREAD, [run(1500, "postgres#1"), run(1650, "postgres#2")])
    by_name = {NOOP: noop, SPREAD: spread}

    twin = noop_twin(spread, by_name)

    assert [r["pair"] for r in twin["runs"]] == ["postgres#1", "postgres#2"]
    assert twin["summary"]["rps_median"] == 3150
    assert twin["summary"]["cpu_ms_per_request"]["server"] == 0.4
    assert noop["summary"]["runs"] == 3  # the record itself is left whole
    row = next(line for line in cpu_table({"scenarios": [noop, spread]}, by_name) if line.startswith("| postgres"))
    assert "| 0.40 · 0.30 · 0.90 |" in row  # server, Envoy, total of the twin's postgres rounds


def test_unpaired_runs_divide_median_by_median():
    noop = scenario(NOOP, [run(4000), run(3000), run(5000)])
    spread = scenario(SPREAD, [run(1500), run(1600), run(2600)])

    assert noop_ratio(spread, {NOOP: noop, SPREAD: spread}) == "0.40"


def test_a_scenario_without_a_measured_twin_has_no_ratio():
    spread = scenario(SPREAD, [run(1500, "postgres#1")])

    assert noop_ratio(spread, {SPREAD: spread}) == "–"
    assert noop_twin(spread, {SPREAD: spread}) is None


def test_the_main_table_shows_the_paired_ratio_and_the_stolen_cores():
    noop = scenario(NOOP, [run(4000, "postgres#1"), run(2000, "postgres#2")])
    spread = scenario(SPREAD, [run(2000, "postgres#1"), run(1200, "postgres#2")])
    by_name = {NOOP: noop, SPREAD: spread}

    lines = main_table({"scenarios": [noop, spread]}, by_name)

    row = next(line for line in lines if line.startswith("| rest-envoy spread"))
    cells = [cell.strip() for cell in row.split("|")]
    assert cells[2] == "1600 [1200–2000]"
    assert cells[3] == "0.55"  # median of 0.50 and 0.60
    assert cells[11] == "0.25"


def test_a_rounds_run_joins_the_scenarios_earlier_runs():
    ctx = SimpleNamespace(results={"scenarios": []})

    phases._record(ctx, scenario(SPREAD, [run(1000, "postgres#1")]))
    phases._record(ctx, scenario(SPREAD, [run(3000, "postgres#2")]))
    phases._record(ctx, scenario(NOOP, [run(4000, "postgres#1")]))

    names = [s["name"] for s in ctx.results["scenarios"]]
    assert names == [SPREAD, NOOP]
    joined = ctx.results["scenarios"][0]
    assert [r["pair"] for r in joined["runs"]] == ["postgres#1", "postgres#2"]
    assert joined["summary"]["runs"] == 2
    assert joined["summary"]["rps_median"] == 2000


def test_the_machines_busy_and_stolen_cores_over_a_window():
    before = procstat.CpuSnapshot(at=10.0, server=None, envoy=None, postgres={}, load_tool=0.0, machine=(100.0, 5.0))
    after = procstat.CpuSnapshot(at=14.0, server=None, envoy=None, postgres={}, load_tool=0.0, machine=(107.6, 6.2))

    assert procstat.machine_cores(before, after) == {"busy": 1.9, "stolen": 0.3}


def test_the_machines_cpu_is_read_from_proc_stat():
    busy, stolen = procstat.machine_cpu_seconds()

    assert busy > 0
    assert stolen >= 0


def test_a_noop_measured_beside_two_databases_shows_one_row_per_databases_rounds():
    noop = scenario(
        NOOP, [run(1000, "sqlite#1"), run(1200, "sqlite#2"), run(3000, "postgres#1"), run(3400, "postgres#2")]
    )
    spread = scenario(SPREAD, [run(1500, "postgres#1")])

    rows = [line for line in main_table({"scenarios": [noop, spread]}, {NOOP: noop, SPREAD: spread}) if "noop" in line]

    assert [[cell.strip() for cell in line.split("|")][1:3] for line in rows] == [
        ["rest-envoy noop c64 (sqlite's rounds)", "1100 [1000–1200]"],
        ["rest-envoy noop c64 (postgres's rounds)", "3200 [3000–3400]"],
    ]
