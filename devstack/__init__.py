"""Run the whole product locally (server + Envoy) as real processes: `make run`, the e2e tests and the
benchmark all start it through `Stack`."""
