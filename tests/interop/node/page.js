// Runs inside the browser page that our server serves (see test_browser.py).
// window.runPlan(plan) drives the browser's own WebSocket through a list of
// connections and returns what it observed; browser.js calls it.
//
// plan: [{path, protocols, steps: [...]}, ...], each connection to
// ws://<page host><path>, offering the subprotocols in `protocols` if any.
// Steps:
//   {op: "echo", kind: "text"|"binary", size: N}
//       send a message, wait for the server's echo, compare it byte for byte
//   {op: "recv", count: N}        record N messages (type, length, sha256)
//   {op: "send_text", text: "..."}
//   {op: "close", code: C, reason: "..."}   close, then wait for the close event
//                                 (no code: close() without arguments)
//   {op: "wait_close"}            wait for the close event
//   {op: "sleep", ms: N}
// Per connection: {extensions, protocol, sent: [...], messages: [...],
// close: {code, reason, was_clean}, error}. Every wait is bounded.

"use strict";

(() => {
  const TIMEOUT_MS = 30000;
  const TEXT_UNIT = "trio_ws \u2194 peer: gr\u00fc\u00dfe, \u2713 \u{1F642}; ";
  const encoder = new TextEncoder();

  function textPayload(size) {
    const unit = encoder.encode(TEXT_UNIT).length;
    return TEXT_UNIT.repeat(Math.floor(size / unit)) + "x".repeat(size % unit);
  }

  // Pseudo-random bytes (xorshift32, seeded by the size): cheap to make in
  // the page; the server checks them by SHA-256, which we report.
  function binaryPayload(size) {
    const bytes = new Uint8Array(size);
    let x = (size ^ 0x9e3779b9) >>> 0 || 1;
    for (let i = 0; i < size; i++) {
      x ^= x << 13;
      x >>>= 0;
      x ^= x >>> 17;
      x ^= x << 5;
      x >>>= 0;
      bytes[i] = x & 0xff;
    }
    return bytes;
  }

  async function sha256(bytes) {
    const digest = await crypto.subtle.digest("SHA-256", bytes);
    return Array.from(new Uint8Array(digest), (b) => b.toString(16).padStart(2, "0")).join("");
  }

  async function describe(data) {
    const bytes = typeof data === "string" ? encoder.encode(data) : new Uint8Array(data);
    return {
      type: typeof data === "string" ? "text" : "binary",
      length: bytes.length,
      sha256: await sha256(bytes),
    };
  }

  function sameBytes(a, b) {
    if (a.length !== b.length) return false;
    for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
    return true;
  }

  function bounded(promise, what) {
    let timer;
    const timeout = new Promise((_, reject) => {
      timer = setTimeout(() => reject(new Error(`timed out: ${what}`)), TIMEOUT_MS);
    });
    return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
  }

  async function runConnection(spec) {
    const result = {
      path: spec.path,
      extensions: null,
      protocol: null,
      sent: [],
      messages: [],
      close: null,
      error: null,
    };
    const ws = new WebSocket(`ws://${location.host}${spec.path}`, spec.protocols || []);
    ws.binaryType = "arraybuffer";
    const queue = [];
    let wake = null;
    const closed = new Promise((resolve) => {
      ws.addEventListener("close", (event) => {
        result.close = { code: event.code, reason: event.reason, was_clean: event.wasClean };
        resolve();
        if (wake) wake();
      });
    });
    ws.addEventListener("message", (event) => {
      queue.push(event.data);
      if (wake) wake();
    });
    async function next() {
      for (;;) {
        if (queue.length) return queue.shift();
        if (result.close) throw new Error("closed while waiting for a message");
        await bounded(new Promise((resolve) => (wake = resolve)), "a message");
      }
    }
    try {
      await bounded(
        new Promise((resolve, reject) => {
          ws.addEventListener("open", resolve);
          ws.addEventListener("error", () => reject(new Error("WebSocket error event")));
        }),
        "the opening handshake",
      );
      result.extensions = ws.extensions;
      result.protocol = ws.protocol;
      for (const step of spec.steps) {
        switch (step.op) {
          case "echo": {
            const message =
              step.kind === "text" ? textPayload(step.size) : binaryPayload(step.size);
            result.sent.push(await describe(message));
            ws.send(message);
            const echo = await next();
            const same =
              typeof message === "string"
                ? echo === message
                : echo instanceof ArrayBuffer && sameBytes(new Uint8Array(echo), message);
            if (!same) throw new Error(`echo of ${step.kind} ${step.size} differs`);
            result.messages.push(await describe(echo));
            break;
          }
          case "recv":
            for (let i = 0; i < (step.count || 1); i++) {
              result.messages.push(await describe(await next()));
            }
            break;
          case "send_text":
            ws.send(step.text);
            break;
          case "close":
            if (step.code === undefined) ws.close();
            else ws.close(step.code, step.reason);
            await bounded(closed, "the close event");
            break;
          case "wait_close":
            await bounded(closed, "the close event");
            break;
          case "sleep":
            await new Promise((resolve) => setTimeout(resolve, step.ms));
            break;
          default:
            throw new Error(`unknown step ${JSON.stringify(step)}`);
        }
      }
    } catch (error) {
      result.error = String(error && error.message ? error.message : error);
    }
    if (!result.close) {
      ws.close(1000, "plan done");
      await bounded(closed, "the close event").catch((error) => {
        result.error = result.error || error.message;
      });
    }
    return result;
  }

  window.runPlan = async (plan) => {
    const results = [];
    for (const spec of plan) results.push(await runConnection(spec));
    return results;
  };
})();
