#!/usr/bin/env node
// Drives headless Chromium (Debian's /usr/bin/chromium) with playwright-core,
// for trio_ws interop tests. Never downloads a browser.
//
//   node browser.js plan URL PLAN_JSON
//       Opens URL (a page our server serves, which loads page.js), runs
//       window.runPlan(plan) in it and prints
//       {user_agent, connections: [...], console: [...]} as one JSON line.
//   node browser.js chat URL MESSAGE
//       Opens URL twice (the chat demo), types MESSAGE in the first page,
//       waits until the second page shows it; prints
//       {seen_by_sender, seen_by_other, console: [...]}.
//
// Set TRIO_WS_CHROMIUM to use another binary. Every wait is bounded.

"use strict";

const fs = require("node:fs");
const os = require("node:os");
const path = require("node:path");
const { chromium } = require("playwright-core");

const TIMEOUT_MS = Number(process.env.TRIO_WS_INTEROP_TIMEOUT || 30) * 1000;
const EXECUTABLE = process.env.TRIO_WS_CHROMIUM || "/usr/bin/chromium";
const ARGS = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
  "--disable-dev-shm-usage",
];

// A fresh profile in a temporary directory, removed afterwards. A watchdog
// closes the browser and exits if the whole run takes too long, so that the
// test's own timeout (which kills us) never leaves a Chromium behind.
async function withBrowser(body) {
  const profile = fs.mkdtempSync(path.join(os.tmpdir(), "trio-ws-chromium-"));
  let context = null;
  const cleanup = async () => {
    if (context) await context.close().catch(() => {});
    fs.rmSync(profile, { recursive: true, force: true });
  };
  const watchdog = setTimeout(async () => {
    process.stderr.write(`browser.js: gave up after ${(1.5 * TIMEOUT_MS) / 1000} s\n`);
    const forced = setTimeout(() => process.exit(3), 5000);
    await cleanup();
    clearTimeout(forced);
    process.exit(3);
  }, 1.5 * TIMEOUT_MS);
  try {
    context = await chromium.launchPersistentContext(profile, {
      executablePath: EXECUTABLE,
      headless: true,
      args: ARGS,
      timeout: TIMEOUT_MS,
    });
    context.setDefaultTimeout(TIMEOUT_MS);
    return await body(context, []);
  } finally {
    clearTimeout(watchdog);
    await cleanup();
  }
}

function watch(page, lines) {
  page.on("console", (message) => lines.push(`${message.type()}: ${message.text()}`));
  page.on("pageerror", (error) => lines.push(`pageerror: ${error.message}`));
}

// A persistent context starts with one blank page: use it first.
const used = new WeakSet();
async function newPage(context, lines) {
  let page = context.pages().find((p) => !used.has(p) && p.url() === "about:blank");
  if (!page) page = await context.newPage();
  used.add(page);
  watch(page, lines);
  return page;
}

async function runPlan(url, plan) {
  return withBrowser(async (context, lines) => {
    const page = await newPage(context, lines);
    await page.goto(url);
    await page.waitForFunction(() => typeof window.runPlan === "function");
    const userAgent = await page.evaluate(() => navigator.userAgent);
    const connections = await page.evaluate((p) => window.runPlan(p), plan);
    return { user_agent: userAgent, connections, console: lines };
  });
}

async function chat(url, message) {
  return withBrowser(async (context, lines) => {
    const sender = await newPage(context, lines);
    const other = await newPage(context, lines);
    for (const page of [sender, other]) {
      await page.goto(url);
      // The page says it is connected before we type.
      await page.locator("#status", { hasText: /^connected$/ }).waitFor();
    }
    await sender.locator("#message").fill(message);
    await sender.locator("#message").press("Enter");
    const line = (page) => page.locator("#log li", { hasText: message });
    await line(other).waitFor();
    await line(sender).waitFor();
    return {
      seen_by_other: await line(other).first().textContent(),
      seen_by_sender: await line(sender).first().textContent(),
      input_after_send: await sender.locator("#message").inputValue(),
      console: lines,
    };
  });
}

async function main(argv) {
  const [command, url, arg] = argv;
  let result;
  if (command === "plan" && argv.length === 3) {
    result = await runPlan(url, JSON.parse(arg));
  } else if (command === "chat" && argv.length === 3) {
    result = await chat(url, arg);
  } else {
    process.stderr.write("usage: browser.js plan URL PLAN_JSON | browser.js chat URL MESSAGE\n");
    process.exit(2);
  }
  process.stdout.write(JSON.stringify(result) + "\n");
}

main(process.argv.slice(2)).catch((error) => {
  process.stderr.write(`${error && error.stack ? error.stack : error}\n`);
  process.exit(1);
});
