"""The stack a benchmark phase runs: devstack's Stack (the server and Envoy exactly as `make run`
starts them), with two things only the benchmark needs:

* the no-op server (bench/noop_server.py) in place of `livechat serve`, started the same way: the
  same environment (address, port, workers, the workers' socket directory, every LIVECHAT_* setting),
  working directory, session, log file and health wait (the port and every worker's socket), with
  `server_args` passed to both commands alike;
* an edge variant (bench/edge_variants.py): Envoy runs a copy of the rendered config without some
  filters. The config is rendered by Stack.start_envoy itself, untouched; the variant is applied to
  the rendered document before it is written (both are kept: envoy-rendered.yaml, envoy.yaml).

After start(), `envoy_config_sha256` fingerprints the config Envoy runs: phases started with the same
ports, settings and variant run byte-identical configs, which the report checks.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path
from typing import Any

import devstack.stack as stack_module
from bench import edge_variants
from devstack.stack import ROOT, Stack, StackConfig


class BenchStack(Stack):
    def __init__(
        self,
        config: StackConfig,
        *,
        noop: bool = False,
        edge: str = edge_variants.FULL,
        server_args: tuple[str, ...] = (),
    ) -> None:
        super().__init__(config)
        edge_variants.check(edge)
        self.noop, self.edge, self.server_args = noop, edge, server_args
        self.removed_from_edge: list[str] = []

    @property
    def server_command(self) -> list[str]:
        if self.noop:
            return [sys.executable, "-m", "bench.noop_server", *self.server_args]
        return [stack_module.binary("livechat"), "serve", *self.server_args]

    @property
    def envoy_config_sha256(self) -> str:
        return hashlib.sha256(self.envoy_config.read_bytes()).hexdigest()[:16]

    def start_server(self, timeout: float = 30.0) -> None:
        if not self.noop and not self.server_args:
            super().start_server(timeout)
            return
        with self.server_log.open("ab") as log:
            self.server = subprocess.Popen(
                self.server_command,
                cwd=ROOT,
                env=self.config.server_env(),
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=stack_module._die_with_parent if self.config.die_with_parent else None,
            )
        # Ready as Stack.start_server has it: the public port and every worker's socket for Envoy serve.
        targets = [f"127.0.0.1:{self.config.grpc_port}", *(f"unix:{path}" for path in self.config.worker_sockets())]
        for target in targets:
            self._wait_for_health(target, self.server, self.server_log, timeout)

    def start_envoy(self, timeout: float = 30.0, *, wait_for_healthy_upstream: bool = True) -> None:
        if self.edge == edge_variants.FULL:
            super().start_envoy(timeout, wait_for_healthy_upstream=wait_for_healthy_upstream)
            return
        original = stack_module.load_envoy_renderer
        stack_module.load_envoy_renderer = lambda: _VariantRenderer(original(), self)
        try:
            super().start_envoy(timeout, wait_for_healthy_upstream=wait_for_healthy_upstream)
        finally:
            stack_module.load_envoy_renderer = original


class _VariantRenderer:
    """envoy/render.py, except that `write` writes the variant (and keeps the rendered original)."""

    def __init__(self, renderer: Any, stack: BenchStack) -> None:
        self._renderer, self._stack = renderer, stack

    def __getattr__(self, name: str) -> Any:
        return getattr(self._renderer, name)

    def write(self, rendered: dict[str, Any], path: str | Path) -> Any:
        self._renderer.write(rendered, Path(path).with_name("envoy-rendered.yaml"))
        variant, removed = edge_variants.apply(rendered, self._stack.edge)
        self._stack.removed_from_edge = removed
        return self._renderer.write(variant, path)
