"""The benchmark's references, run for real: the no-op SendSuperlike server (bench/noop_server.py)
behind Envoy, the full rendered config and an edge variant of it, driven by the gRPC load generator
(bench/grpc_load.mjs) through Envoy and directly."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from bench import loadgen, procstat
from bench.bench_stack import BenchStack
from bench.measure import SUPERLIKE_METHOD
from devstack.ports import free_port
from devstack.stack import StackConfig
from tests.conftest import SigningKeys
from tests.e2e.credentials import bearer_header, edge_token
from tests.e2e.http_client import request, superlike_path

pytestmark = pytest.mark.e2e

STREAM = "64d15f9e2e6c8f4d5a123000"
SENDERS = [f"64d15f9e2e6c8f4d5a12345{i}" for i in range(3)]


def noop_stack(workdir: Path, keys: SigningKeys, edge: str, workers: int = 1) -> BenchStack:
    config = StackConfig(
        workdir=workdir,
        # Never opened; several workers need a URL several processes could share.
        database_url="postgresql://unused@127.0.0.1/unused" if workers > 1 else f"sqlite:///{workdir / 'unused.db'}",
        workers=workers,
        jwks_path=keys.jwks_path,
        grpc_port=free_port(),
        http_port=free_port(),
        admin_port=free_port(),
        # Three senders as fast as the tool goes: far above a person's pace (the bench goes round
        # thousands and keeps the product's limit).
        envoy_overrides={"send_burst": 100_000, "send_per_second": 100_000},
        die_with_parent=True,
    )
    return BenchStack(config, noop=True, edge=edge)


def test_the_noop_answers_a_rest_superlike_with_the_real_answers_shape(signing_keys, tmp_path):
    stack = noop_stack(tmp_path, signing_keys, "full")
    stack.start()
    try:
        token = edge_token(signing_keys, SENDERS[0])
        answer = request(stack.config.http_port, "POST", superlike_path(STREAM), bearer_header(token), b"{}")
    finally:
        stack.stop()
    assert answer.status == 200
    document = json.loads(answer.body)
    assert list(document) == [
        "streamId",
        "senderId",
        "senderSnapshot",
        "price",
        "timestamp",
        "superlikeId",
        "senderBalance",
    ]
    assert list(document["senderSnapshot"]) == ["_id", "username", "name", "surname", "profilePhoto"]
    assert (document["senderSnapshot"]["username"], document["price"]) == ("bench_s12345", 1)


@pytest.mark.skipif(shutil.which("node") is None, reason="grpc_load.mjs needs Node.js")
@pytest.mark.parametrize("path", ["grpc-envoy", "grpc-direct"])
def test_the_grpc_load_generator_varies_the_sender_and_counts_every_call_behind_an_edge_variant(
    signing_keys, tmp_path, path
):
    stack = noop_stack(tmp_path, signing_keys, "no-lua")
    tokens_file = tmp_path / "tokens.txt"
    tokens_file.write_text("".join(edge_token(signing_keys, sender) + "\n" for sender in SENDERS))
    frames = loadgen.write_frames(tmp_path / "frames.b64", [loadgen.grpc_frame(b"\x0a\x18" + STREAM.encode())])
    stack.start()
    try:
        assert stack.removed_from_edge == ["http filter envoy.filters.http.lua"]
        port = stack.config.http_port if path == "grpc-envoy" else stack.config.grpc_port
        result = loadgen.run_grpc_load(
            shutil.which("node"),
            target=f"http://127.0.0.1:{port}",
            method_path=SUPERLIKE_METHOD,
            frames_file=frames,
            tokens_file=tokens_file,
            token_offset=0,
            concurrency=4,
            connections=2,
            duration_s=1,
            config_file=tmp_path / "load.json",
        )
    finally:
        stack.stop()
    assert result["requests"] > 0
    assert (result["ok"], result["non_2xx"], result["socket_errors"], result["problems"]) == (
        result["requests"],
        0,
        0,
        [],
    )


def test_the_noop_runs_as_many_workers_as_the_server_each_on_its_socket_and_the_bench_counts_them_all(
    signing_keys, tmp_path
):
    stack = noop_stack(tmp_path, signing_keys, "full", workers=2)
    stack.start()  # Envoy is ready once both workers' sockets pass its health checks
    try:
        token = edge_token(signing_keys, SENDERS[0])
        answer = request(stack.config.http_port, "POST", superlike_path(STREAM), bearer_header(token), b"{}")
        tree = procstat.process_tree(stack.server.pid)
        cpu = procstat.tree_cpu_seconds(stack.server.pid)
    finally:
        stack.stop()
    assert answer.status == 200
    assert [path.name for path in stack.config.worker_sockets()] == ["worker-0.sock", "worker-1.sock"]
    assert len(tree) == 3  # the supervisor and its two workers, as `livechat serve --workers 2`
    assert sorted(cpu) == sorted(tree)
    assert [procstat.cpu_seconds(pid) for pid in tree] == [None, None, None]  # stopping the parent stops all
