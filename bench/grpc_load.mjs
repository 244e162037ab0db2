// gRPC load generator for the benchmark: one Node.js process, a few HTTP/2 connections, many
// streams, and another sender (token) and stream on every call. Node's built-in http2 module only:
// nothing to install.
//
// It replaces the fleet of `h2load -c1 -m1` processes (one per in-flight call, because h2load
// repeats one header set and body per process): 64 processes cost the box more CPU than the server
// under test. It reads each answer's grpc-status (h2load only saw the HTTP status), so a gRPC error
// counts as an error here, and it stops by time but lets every call in flight finish, so "calls
// answered OK == superlikes written" stays exact.
//
//   node bench/grpc_load.mjs CONFIG.json
//
// CONFIG: {"target": "http://127.0.0.1:PORT", "path": "/pkg.Service/Method", "connections": 8,
//   "concurrency": 64, "duration_s": 10 | null, "requests": N | null, "timeout_s": 10,
//   "tokens_file": PATH | null (one JWT a line), "token_offset": 0,
//   "frames_file": PATH (one base64 gRPC frame a line: 5-byte prefix + the encoded request)}
// Call n takes token (token_offset + n) % tokens and frame (n + floor(n / tokens)) % frames: the
// frame (stream) moves on by one every round over the senders, as in bench/superlike.lua.
// At the end it prints one line "BENCH_JSON {...}" (bench/loadgen.py parses it).

import fs from "node:fs";
import http2 from "node:http2";
import { performance } from "node:perf_hooks";

const config = JSON.parse(fs.readFileSync(process.argv[2], "utf8"));
const lines = (path) => fs.readFileSync(path, "latin1").split("\n").filter((line) => line.length > 0);
const tokens = config.tokens_file ? lines(config.tokens_file) : [];
const frames = lines(config.frames_file).map((line) => Buffer.from(line, "base64"));
const tokenCount = Math.max(tokens.length, 1);
const offset = config.token_offset || 0;
const connections = Math.max(1, Math.min(config.connections || 1, config.concurrency));
const timeoutMs = 1000 * (config.timeout_s || 10);
const { HTTP2_HEADER_STATUS } = http2.constants;

const sessions = new Array(connections).fill(null);
let sessionErrors = 0;

function session(index) {
  let current = sessions[index];
  if (current === null || current.closed || current.destroyed) {
    current = http2.connect(config.target);
    current.on("error", () => {
      sessionErrors += 1;
    });
    sessions[index] = current;
  }
  return current;
}

const latencies = [];
const grpcErrors = {};
const errorSamples = [];
let issued = 0;
let completed = 0;
let ok = 0;
let httpNon200 = 0;
let streamErrors = 0;
let timeouts = 0;
let active = 0;
let stopping = false;
let firstStart = Infinity;
let lastEnd = 0;

// One watchdog for every call in flight (a timer per call costs more than the call's own work).
const inFlight = new Map();
const watchdog = setInterval(() => {
  const now = performance.now();
  for (const [request, started] of inFlight) {
    if (now - started > timeoutMs) {
      request.timedOut = true;
      request.close(http2.constants.NGHTTP2_CANCEL);
    }
  }
}, 500);

function issue(slot) {
  if (stopping || (config.requests && issued >= config.requests)) {
    active -= 1;
    if (active === 0) finish();
    return;
  }
  const n = issued++;
  const headers = {
    ":method": "POST",
    ":path": config.path,
    "content-type": "application/grpc",
    te: "trailers",
  };
  if (tokens.length > 0) headers.authorization = "Bearer " + tokens[(offset + n) % tokens.length];
  const frame = frames[(n + Math.floor(n / tokenCount)) % frames.length];
  const started = performance.now();
  if (started < firstStart) firstStart = started;
  let httpStatus = 0;
  let grpcStatus;
  let grpcMessage;
  let failed = false;
  const request = session(slot % connections).request(headers);
  request.on("response", (answer) => {
    httpStatus = answer[HTTP2_HEADER_STATUS];
    grpcStatus = answer["grpc-status"]; // trailers-only answers carry it here
    grpcMessage = answer["grpc-message"];
  });
  request.on("trailers", (trailers) => {
    grpcStatus = trailers["grpc-status"];
    grpcMessage = trailers["grpc-message"];
  });
  request.resume(); // the answer's bytes are not needed, only its status
  request.on("error", () => {
    failed = true;
  });
  inFlight.set(request, started);
  request.on("close", () => {
    const ended = performance.now();
    inFlight.delete(request);
    if (request.timedOut) timeouts += 1;
    else if (failed || httpStatus === 0) {
      streamErrors += 1;
      // Nothing answers (refused, reset): stop instead of spinning through failures until the end.
      if (completed === 0 && streamErrors >= 1000) stopping = true;
    }
    else {
      completed += 1;
      latencies.push(ended - started);
      if (ended > lastEnd) lastEnd = ended;
      if (httpStatus !== 200) httpNon200 += 1;
      else if (grpcStatus === "0") ok += 1;
      else {
        const code = grpcStatus === undefined ? "missing" : grpcStatus;
        grpcErrors[code] = (grpcErrors[code] || 0) + 1;
        if (errorSamples.length < 5) errorSamples.push(`${code}: ${grpcMessage || ""}`);
      }
    }
    issue(slot);
  });
  request.end(frame);
}

function percentile(sorted, pct) {
  if (sorted.length === 0) return null;
  return sorted[Math.max(1, Math.ceil((pct / 100) * sorted.length)) - 1];
}

function finish() {
  clearInterval(watchdog);
  for (const current of sessions) if (current !== null) current.close();
  const sorted = Float64Array.from(latencies).sort();
  const us = (ms) => (ms === null ? null : Math.round(ms * 1000));
  const sum = latencies.reduce((total, value) => total + value, 0);
  const result = {
    issued,
    requests: completed,
    ok,
    http_non_200: httpNon200,
    grpc_errors: grpcErrors,
    error_samples: errorSamples,
    stream_errors: streamErrors,
    session_errors: sessionErrors,
    timeouts,
    duration_us: completed > 0 ? us(lastEnd - firstStart) : 0,
    p50_us: us(percentile(sorted, 50)),
    p90_us: us(percentile(sorted, 90)),
    p99_us: us(percentile(sorted, 99)),
    max_us: us(sorted.length ? sorted[sorted.length - 1] : null),
    mean_us: completed > 0 ? us(sum / completed) : null,
    connections,
  };
  process.stdout.write(`BENCH_JSON ${JSON.stringify(result)}\n`);
  process.exitCode = 0;
}

active = config.concurrency;
if (config.duration_s) {
  setTimeout(() => {
    stopping = true;
  }, 1000 * config.duration_s).unref();
}
for (let slot = 0; slot < config.concurrency; slot += 1) issue(slot);
