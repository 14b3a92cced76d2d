// Drives a real headless Chromium through the DevTools protocol for tests/dashboard_browser.rs:
// loads the dashboard at each width, waits for data, sparklines and the cluster timeline,
// records whether the page fits, saves a full-page screenshot, then uses the page's own token
// field and drain button. Prints one JSON object on stdout.
//
// usage: node dashboard_cdp.js CHROMIUM URL TOKEN OUT_DIR
"use strict";
const { spawn } = require("child_process");
const fs = require("fs");
const os = require("os");
const path = require("path");
const net = require("net");
const crypto = require("crypto");

const [chrome, url, token, outDir] = process.argv.slice(2);
const profile = fs.mkdtempSync(path.join(os.tmpdir(), "edgelb-cdp-"));
const proc = spawn(chrome, [
  "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
  "--disable-background-networking", "--disable-component-update", "--disable-sync",
  "--disable-dev-shm-usage", "--hide-scrollbars", "--remote-debugging-port=0",
  "--user-data-dir=" + profile, "about:blank",
], { stdio: ["ignore", "ignore", "pipe"] });

function cleanup() {
  try { proc.kill("SIGKILL"); } catch (e) {}
  try { fs.rmSync(profile, { recursive: true, force: true }); } catch (e) {}
}

function devtoolsUrl() {
  return new Promise((resolve, reject) => {
    let buf = "";
    proc.stderr.on("data", (d) => {
      buf += d;
      const m = buf.match(/ws:\/\/\S+/);
      if (m) resolve(m[0]);
    });
    proc.on("exit", (c) => reject(new Error("chromium exited " + c + ": " + buf)));
  });
}

// A minimal WebSocket client (RFC 6455 text frames, client masking), so the driver needs no
// package and no `--experimental-websocket` (Debian's node 18 has no global WebSocket).
function connectWs(u) {
  const { hostname, port, pathname } = new URL(u);
  return new Promise((resolve, reject) => {
    const sock = net.connect(Number(port), hostname);
    const key = crypto.randomBytes(16).toString("base64");
    const api = { onmessage: null };
    let buf = Buffer.alloc(0);
    let open = false;
    let frag = [];
    sock.on("connect", () => sock.write("GET " + pathname + " HTTP/1.1\r\nHost: " + hostname + ":" + port +
      "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: " + key + "\r\nSec-WebSocket-Version: 13\r\n\r\n"));
    sock.on("error", reject);
    sock.on("data", (d) => {
      buf = Buffer.concat([buf, d]);
      if (!open) {
        const i = buf.indexOf("\r\n\r\n");
        if (i < 0) return;
        if (!/^HTTP\/1\.1 101/.test(buf.slice(0, i).toString())) { reject(new Error("no upgrade: " + buf)); return; }
        buf = buf.slice(i + 4);
        open = true;
        resolve(api);
      }
      for (;;) {
        if (buf.length < 2) return;
        let len = buf[1] & 0x7f, off = 2;
        if (len === 126) { if (buf.length < 4) return; len = buf.readUInt16BE(2); off = 4; }
        else if (len === 127) { if (buf.length < 10) return; len = Number(buf.readBigUInt64BE(2)); off = 10; }
        if (buf.length < off + len) return;
        const fin = (buf[0] & 0x80) !== 0, op = buf[0] & 0x0f;
        const payload = buf.slice(off, off + len);
        buf = buf.slice(off + len);
        if (op === 1 || op === 0) {
          frag.push(payload);
          if (fin && api.onmessage) { const text = Buffer.concat(frag).toString(); frag = []; api.onmessage({ data: text }); }
        }
      }
    });
    api.send = (text) => {
      const p = Buffer.from(text), mask = crypto.randomBytes(4);
      let h;
      if (p.length < 126) h = Buffer.from([0x81, 0x80 | p.length]);
      else if (p.length < 65536) { h = Buffer.alloc(4); h[0] = 0x81; h[1] = 0x80 | 126; h.writeUInt16BE(p.length, 2); }
      else { h = Buffer.alloc(10); h[0] = 0x81; h[1] = 0x80 | 127; h.writeBigUInt64BE(BigInt(p.length), 2); }
      const m = Buffer.alloc(p.length);
      for (let i = 0; i < p.length; i++) m[i] = p[i] ^ mask[i & 3];
      sock.write(Buffer.concat([h, mask, m]));
    };
    api.close = () => sock.destroy();
  });
}

let ws;
let next = 0;
const pending = new Map();
function send(method, params, sessionId) {
  return new Promise((resolve, reject) => {
    const id = ++next;
    pending.set(id, { resolve, reject });
    ws.send(JSON.stringify({ id, method, params: params || {}, sessionId }));
  });
}
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function main() {
  ws = await connectWs(await devtoolsUrl());
  ws.onmessage = (ev) => {
    const m = JSON.parse(ev.data);
    const p = m.id && pending.get(m.id);
    if (!p) return;
    pending.delete(m.id);
    if (m.error) p.reject(new Error(JSON.stringify(m.error))); else p.resolve(m.result);
  };
  const { targetId } = await send("Target.createTarget", { url: "about:blank" });
  const { sessionId } = await send("Target.attachToTarget", { targetId, flatten: true });
  const evaluate = async (expression) => {
    const r = await send("Runtime.evaluate", { expression, awaitPromise: true, returnByValue: true }, sessionId);
    if (r.exceptionDetails) throw new Error(JSON.stringify(r.exceptionDetails));
    return r.result.value;
  };
  const until = async (expression, what) => {
    const end = Date.now() + 20000;
    for (;;) {
      const v = await evaluate(expression);
      if (v) return v;
      if (Date.now() > end) throw new Error("timed out waiting for " + what);
      await sleep(100);
    }
  };
  await send("Page.enable", {}, sessionId);
  const out = { widths: {} };
  for (const width of [1280, 1920]) {
    await send("Emulation.setDeviceMetricsOverride", { width, height: 900, deviceScaleFactor: 1, mobile: false }, sessionId);
    await send("Page.navigate", { url }, sessionId);
    await until("document.body && document.body.getAttribute('data-fit') !== null && document.querySelectorAll('svg.spark polyline').length > 0 && document.querySelectorAll('#timeline rect.hb').length > 0", "data, sparklines and timeline at " + width);
    const facts = await evaluate(`(function () {
      var de = document.documentElement;
      return {
        fit: document.body.getAttribute("data-fit"),
        scroll_width: de.scrollWidth, client_width: de.clientWidth,
        sparklines: document.querySelectorAll("svg.spark polyline").length,
        rate_sparklines: document.querySelectorAll("td[data-spark=rate] polyline").length,
        latency_sparklines: document.querySelectorAll("td[data-spark=latency] polyline").length,
        heartbeat_cells: document.querySelectorAll("#timeline rect.hb").length,
        eip_moves: document.querySelectorAll("#timeline rect.move").length,
        events: Array.prototype.map.call(document.querySelectorAll("#events li"), function (li) { return li.textContent; }),
        statuses: Array.prototype.map.call(document.querySelectorAll("tr[data-server]"), function (tr) { return tr.getAttribute("data-server") + "=" + tr.getAttribute("data-status"); })
      };
    })()`);
    const metrics = await send("Page.getLayoutMetrics", {}, sessionId);
    const h = Math.ceil(metrics.cssContentSize ? metrics.cssContentSize.height : metrics.contentSize.height);
    const shot = await send("Page.captureScreenshot", { format: "png", captureBeyondViewport: true, clip: { x: 0, y: 0, width, height: h, scale: 1 } }, sessionId);
    const file = path.join(outDir, "dashboard-" + width + ".png");
    fs.writeFileSync(file, Buffer.from(shot.data, "base64"));
    facts.screenshot = file;
    out.widths[width] = facts;
  }
  // The page's own controls: paste the token, press "drain" on app1.
  await evaluate(`document.getElementById("token").value = ${JSON.stringify(token)}; document.getElementById("savetoken").click(); true`);
  await evaluate(`document.querySelector('button[data-act="drain"][data-s="app1"]').click(); true`);
  out.drain_message = await until(`(function () { var m = document.getElementById("msg").textContent; return m.indexOf("drain") >= 0 || m.indexOf("40") === 0 ? m + (document.getElementById("msg").className ? " [error]" : "") : ""; })()`, "the drain answer");
  out.app1_after = await until(`(function () { var tr = document.querySelector('tr[data-server="app1"]'); var s = tr && tr.getAttribute("data-status"); return s && s.indexOf("DRAIN") === 0 ? s : ""; })()`, "app1 DRAIN in the table");
  process.stdout.write(JSON.stringify(out) + "\n");
}

main().then(() => { if (ws) ws.close(); cleanup(); process.exit(0); }, (e) => { process.stderr.write(String(e && e.stack || e) + "\n"); cleanup(); process.exit(1); });
