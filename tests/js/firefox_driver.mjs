// Drives the system's Firefox over WebDriver BiDi (puppeteer-core) for tests/rigs/firefox.py.
//
//   node firefox_driver.mjs /usr/bin/firefox-esr
//
// Reads one JSON request per line on stdin and answers each with one JSON line on stdout:
//   {"id": 1, "op": "goto", "url": "http://127.0.0.1:8000/listen/x/"}  -> {"id": 1, "value": null}
//   {"id": 2, "op": "evaluate", "expression": "document.title"}        -> {"id": 2, "value": "..."}
// and {"id": n, "error": "..."} when a request fails. stdin closing ends the browser and the driver.
// Firefox's own output goes to stderr. It never downloads a browser: executablePath is required.
import { createInterface } from "node:readline";
import puppeteer from "puppeteer-core";

// Loopback candidates allowed and not hidden behind mDNS names; autoplay allowed (like the
// Chromium rig's --autoplay-policy). puppeteer adds its own prefs against updates and first-run pages.
const PREFS = {
  "media.peerconnection.ice.loopback": true,
  "media.peerconnection.ice.obfuscate_host_addresses": false,
  "media.autoplay.default": 0,
};

const executablePath = process.argv[2];
if (!executablePath) {
  process.stderr.write("usage: node firefox_driver.mjs <path of firefox>\n");
  process.exit(2);
}

const browser = await puppeteer.launch({
  browser: "firefox",
  executablePath,
  headless: true,
  extraPrefsFirefox: PREFS,
  handleSIGINT: false,
  handleSIGTERM: true,
  handleSIGHUP: true,
});
// Firefox's own output goes to stderr: stdout carries the answers only.
for (const stream of [browser.process().stdout, browser.process().stderr]) stream.pipe(process.stderr);
const page = (await browser.pages())[0] || (await browser.newPage());
page.on("console", (message) => process.stderr.write(`[console.${message.type()}] ${message.text()}\n`));
page.on("pageerror", (error) => process.stderr.write(`[pageerror] ${error.message}\n`));

async function handle(request) {
  if (request.op === "goto") {
    await page.goto(request.url, { waitUntil: "load" });
    return null;
  }
  if (request.op === "evaluate") {
    return await page.evaluate(request.expression);
  }
  throw new Error(`unknown op ${request.op}`);
}

function answer(message) {
  process.stdout.write(`${JSON.stringify(message)}\n`);
}

answer({ id: 0, value: { ready: true, version: await browser.version() } });
// One request at a time, in order: the rig waits for each answer before it sends the next.
for await (const line of createInterface({ input: process.stdin })) {
  if (!line.trim()) continue;
  const request = JSON.parse(line);
  try {
    answer({ id: request.id, value: (await handle(request)) ?? null });
  } catch (error) {
    answer({ id: request.id, error: String(error && error.stack ? error.stack : error) });
  }
}
await browser.close();
