#!/usr/bin/env node
// A WebSocket peer built on Node's `ws` package, for trio_ws interop tests.
//
//   node peer.js client URL PLAN_JSON [--no-deflate] [--max-payload=N] [--ca=FILE]
//       Connects to URL, runs the plan, prints one JSON line of results.
//       For wss:// URLs, --ca names the PEM file of the CA to trust.
//   node peer.js server [--no-deflate] [--max-payload=N]
//       Listens on 127.0.0.1, port 0; prints {"port": N}. Each connection
//       runs the plan in its `plan` query parameter (JSON; default: echo
//       every message until closed) and, once closed, prints
//       {"id": <its `id` query parameter>, "results": {...}}.
//       Exits when stdin closes.
//
// permessage-deflate is on with threshold 0 (every message compressed)
// unless --no-deflate; --max-payload=N sets ws's maxPayload (default
// 64 MiB). A plan is a list of steps, run in order:
//
//   {"op": "send", "kind": "text"|"binary", "size": N, "fragments": K}
//       the deterministic payload of tests/interop/peers.py, in K frames
//   {"op": "send_raw_text", "hex": "..."}   these bytes in a text frame, valid
//       UTF-8 or not (ws does not check what it sends)
//   {"op": "recv", "count": N}       record N messages (type, length, sha256)
//   {"op": "echo", "count": N}       send N messages back (N: null = until closed)
//   {"op": "ping", "data": "..."}    ping, record the round trip once the pong comes
//   {"op": "close", "code": C, "reason": "..."}   close and wait for the close event
//       (no code: an empty close frame)
//   {"op": "terminate"}              drop the TCP connection, no close frame
//   {"op": "pause"} / {"op": "resume"}   stop / restart reading the socket
//   {"op": "wait_close"}             wait for the close event
//   {"op": "sleep", "ms": N}
//
// Results: {extensions, protocol, messages: [...], pings_received,
// pong_latencies_ms: [...], close: {code, reason, was_clean}, error}. Every
// wait is bounded by TIMEOUT_MS; a timeout is reported in `error`.

"use strict";

const crypto = require("node:crypto");
const fs = require("node:fs");
const http = require("node:http");
const { WebSocket, WebSocketServer } = require("ws");

const TIMEOUT_MS = Number(process.env.TRIO_WS_INTEROP_TIMEOUT || 30) * 1000;
let maxPayload = 64 * 1024 * 1024;
let caFile = null;
const TEXT_UNIT = "trio_ws \u2194 peer: gr\u00fc\u00dfe, \u2713 \u{1F642}; ";
const BINARY_SEED = "trio_ws interop";

function textPayload(size) {
  const unit = Buffer.byteLength(TEXT_UNIT);
  return TEXT_UNIT.repeat(Math.floor(size / unit)) + "x".repeat(size % unit);
}

function binaryPayload(size) {
  if (size === 0) return Buffer.alloc(0);
  return crypto.createHash("shake256", { outputLength: size }).update(BINARY_SEED).digest();
}

function describe(data, isBinary) {
  const bytes = Buffer.isBuffer(data) ? data : Buffer.concat(data);
  return {
    type: isBinary ? "binary" : "text",
    length: bytes.length,
    sha256: crypto.createHash("sha256").update(bytes).digest("hex"),
  };
}

function deflateOptions(deflate) {
  return deflate ? { threshold: 0 } : false;
}

function withTimeout(promise, what) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out: ${what}`)), TIMEOUT_MS);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

// Wraps a ws WebSocket: queues messages, records pings, pongs and the close.
class Peer {
  constructor(ws) {
    this.ws = ws;
    this.queue = [];
    this.waiters = [];
    this.results = {
      extensions: ws.extensions,
      protocol: ws.protocol,
      messages: [],
      pings_received: 0,
      pong_latencies_ms: [],
      close: null,
      error: null,
    };
    this.pongWaiters = new Map();
    this.closed = new Promise((resolve) => {
      ws.addEventListener("close", (event) => {
        this.results.close = {
          code: event.code,
          reason: event.reason,
          was_clean: event.wasClean,
        };
        resolve();
        this.wake();
      });
    });
    ws.on("message", (data, isBinary) => {
      this.queue.push({ data, isBinary });
      this.wake();
    });
    ws.on("ping", () => {
      this.results.pings_received += 1;
    });
    ws.on("pong", (data) => {
      const waiter = this.pongWaiters.get(data.toString("hex"));
      if (waiter) waiter();
    });
    ws.on("error", (error) => {
      if (!this.results.error) this.results.error = `ws error: ${error.message}`;
    });
  }

  wake() {
    const waiters = this.waiters;
    this.waiters = [];
    for (const resolve of waiters) resolve();
  }

  // The next message, or null once the connection is closed.
  async next() {
    for (;;) {
      if (this.queue.length) return this.queue.shift();
      if (this.results.close) return null;
      await withTimeout(new Promise((resolve) => this.waiters.push(resolve)), "a message");
    }
  }

  send(data, options) {
    return new Promise((resolve, reject) => {
      this.ws.send(data, options, (error) => (error ? reject(error) : resolve()));
    });
  }

  async run(plan) {
    try {
      for (const step of plan) await this.step(step);
    } catch (error) {
      this.results.error = String(error && error.message ? error.message : error);
    }
    return this.results;
  }

  async step(step) {
    const ws = this.ws;
    switch (step.op) {
      case "send": {
        const binary = step.kind === "binary";
        const data = binary ? binaryPayload(step.size) : Buffer.from(textPayload(step.size));
        const fragments = step.fragments || 1;
        const piece = Math.ceil(data.length / fragments);
        for (let i = 0; i < fragments; i++) {
          // Text fragments are cut at byte offsets, possibly inside a
          // character: only the whole message must be valid UTF-8.
          const chunk = data.subarray(i * piece, Math.min(data.length, (i + 1) * piece));
          await this.send(chunk, { binary, fin: i === fragments - 1 });
        }
        break;
      }
      case "send_raw_text":
        await this.send(Buffer.from(step.hex, "hex"), { binary: false });
        break;
      case "recv":
        for (let i = 0; i < (step.count || 1); i++) {
          const message = await this.next();
          if (!message) throw new Error("closed while waiting for a message");
          this.results.messages.push(describe(message.data, message.isBinary));
        }
        break;
      case "echo": {
        const count = step.count === undefined ? 1 : step.count;
        for (let i = 0; count === null || i < count; i++) {
          const message = await this.next();
          if (!message) {
            if (count === null) break;
            throw new Error("closed while waiting for a message to echo");
          }
          this.results.messages.push(describe(message.data, message.isBinary));
          await this.send(message.data, { binary: message.isBinary });
        }
        break;
      }
      case "ping": {
        const data = Buffer.from(step.data || "ping from ws");
        const started = process.hrtime.bigint();
        const pong = new Promise((resolve) => this.pongWaiters.set(data.toString("hex"), resolve));
        ws.ping(data);
        await withTimeout(pong, "a pong");
        this.results.pong_latencies_ms.push(Number(process.hrtime.bigint() - started) / 1e6);
        break;
      }
      case "close":
        ws.close(step.code, step.reason);
        await withTimeout(this.closed, "the close event");
        break;
      case "terminate":
        ws.terminate();
        await withTimeout(this.closed, "the close event");
        break;
      case "pause":
        ws.pause();
        break;
      case "resume":
        ws.resume();
        break;
      case "wait_close":
        await withTimeout(this.closed, "the close event");
        break;
      case "sleep":
        await new Promise((resolve) => setTimeout(resolve, step.ms));
        break;
      default:
        throw new Error(`unknown step ${JSON.stringify(step)}`);
    }
  }
}

async function runClient(url, plan, deflate) {
  const ws = new WebSocket(url, {
    perMessageDeflate: deflateOptions(deflate),
    maxPayload,
    handshakeTimeout: TIMEOUT_MS,
    ...(caFile ? { ca: fs.readFileSync(caFile) } : {}),
  });
  const opened = new Promise((resolve, reject) => {
    ws.once("open", resolve);
    ws.once("error", reject);
    ws.once("unexpected-response", (_, response) =>
      reject(new Error(`unexpected response ${response.statusCode}`)),
    );
  });
  // Listen before the handshake completes: frames may follow it at once.
  const peer = new Peer(ws);
  let results;
  try {
    await withTimeout(opened, "the opening handshake");
    peer.results.extensions = ws.extensions;
    peer.results.protocol = ws.protocol;
    results = await peer.run(plan);
    // Leave no connection behind: close if the plan did not.
    if (!peer.results.close) {
      if (ws.readyState === WebSocket.OPEN) ws.close(1000, "plan done");
      await withTimeout(peer.closed, "the close event").catch((error) => {
        results.error = results.error || error.message;
        ws.terminate();
      });
    }
  } catch (error) {
    results = { error: `could not connect: ${error.message}` };
    ws.terminate();
  }
  process.stdout.write(JSON.stringify(results) + "\n");
}

function runServer(deflate) {
  const server = http.createServer((_, response) => {
    response.writeHead(426).end("WebSocket only\n");
  });
  const wss = new WebSocketServer({
    server,
    perMessageDeflate: deflateOptions(deflate),
    maxPayload,
  });
  wss.on("connection", async (ws, request) => {
    const query = new URL(request.url, "http://localhost").searchParams;
    const plan = query.has("plan") ? JSON.parse(query.get("plan")) : [{ op: "echo", count: null }];
    const peer = new Peer(ws);
    const results = await peer.run(plan);
    if (!peer.results.close) {
      await withTimeout(peer.closed, "the close event").catch((error) => {
        results.error = results.error || error.message;
        ws.terminate();
      });
    }
    process.stdout.write(JSON.stringify({ id: query.get("id"), results }) + "\n");
  });
  server.listen(0, "127.0.0.1", () => {
    process.stdout.write(JSON.stringify({ port: server.address().port }) + "\n");
  });
  // The test owns our lifetime: exit when it closes our stdin.
  process.stdin.resume();
  process.stdin.on("end", () => process.exit(0));
}

function main(argv) {
  const deflate = !argv.includes("--no-deflate");
  for (const arg of argv) {
    if (arg.startsWith("--max-payload=")) maxPayload = Number(arg.split("=")[1]);
    if (arg.startsWith("--ca=")) caFile = arg.slice("--ca=".length);
  }
  const args = argv.filter((arg) => !arg.startsWith("--"));
  if (args[0] === "client" && args.length === 3) {
    return runClient(args[1], JSON.parse(args[2]), deflate);
  }
  if (args[0] === "server" && args.length === 1) {
    return runServer(deflate);
  }
  process.stderr.write(
    "usage: peer.js client URL PLAN_JSON [options] | peer.js server [options]\n" +
      "options: --no-deflate --max-payload=N --ca=FILE (client only)\n",
  );
  process.exit(2);
}

main(process.argv.slice(2));
