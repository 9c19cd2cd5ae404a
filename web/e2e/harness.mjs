// What the browser tests stand on: real petchat-node processes on loopback ports they
// choose (serving the built client), Debian's chromium driven by playwright-core, people
// who register through the page, and screenshots kept as artifacts.
import { execFileSync, spawn } from 'node:child_process';
import { connect, createServer } from 'node:net';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import assert from 'node:assert/strict';
import { after, before } from 'node:test';
import { chromium } from 'playwright-core';

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, '..', '..');
export const NODE_BIN = process.env.PETCHAT_NODE ?? path.join(root, 'build/node/app/petchat-node');
export const WEB_DIST = process.env.PETCHAT_WEB_DIST ?? path.join(root, 'build/web/dist');
export const ARTIFACTS = process.env.PETCHAT_ARTIFACTS ?? path.join(root, 'build/web-artifacts');
export const CHROMIUM = process.env.PETCHAT_CHROMIUM ?? '/usr/bin/chromium';
export const WAIT_MS = 20000; // for anything the node or the page does by itself

// A node of its own: a temporary data dir, its config, its port (chosen at the first start
// and kept, so that a restarted node is found at the same address).
export class Node {
  // users: more [users] keys ({access_token_ttl_s: 6}); gateway: more [gateway] keys;
  // extra: whole sections appended.
  constructor({ region = 'test', extra = '', users = {}, gateway = {} } = {}) {
    this.users = users;
    this.gateway = gateway;
    this.dir = mkdtempSync(path.join(tmpdir(), 'petchat-e2e-'));
    this.region = region;
    this.extra = extra;
    this.port = 0;
    this.stderr = '';
  }

  writeConfig() {
    const toml = [
      '[node]', `region = "${this.region}"`, 'threads = 2', `data_dir = "${this.dir}/data"`,
      '[gateway]', `listen = "127.0.0.1:${this.port}"`,
      ...Object.entries(this.gateway).map(([k, v]) => `${k} = ${JSON.stringify(v)}`),
      '[metrics]', 'listen = "127.0.0.1:0"',
      // Every person registers from 127.0.0.1; argon2id kept cheap for speed.
      '[users]', 'password_hash_ops = 1', 'password_hash_memory_kib = 8192', 'max_registrations_per_address = 1000000',
      'login_checks_per_minute_per_address = 0',
      ...Object.entries(this.users).map(([k, v]) => `${k} = ${JSON.stringify(v)}`),
      '[web]', `root = "${WEB_DIST}"`, this.extra, '',
    ].join('\n');
    writeFileSync(path.join(this.dir, 'node.toml'), toml);
  }

  // Creates the data dir and the region's key (petchat-node --init); returns the public key.
  init() {
    this.writeConfig();
    return execFileSync(NODE_BIN, ['--config', path.join(this.dir, 'node.toml'), '--init'], { encoding: 'utf8' }).trim();
  }

  async start() {
    this.port ||= await freePort();
    this.writeConfig();
    this.child = spawn(NODE_BIN, ['--config', path.join(this.dir, 'node.toml')], { stdio: ['ignore', 'pipe', 'pipe'] });
    this.child.stderr.on('data', (d) => { this.stderr += d; });
    let out = '';
    this.url = await new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`the node did not start in 30 s:\n${this.stderr}`)), 30000);
      this.child.stdout.on('data', (d) => {
        out += d;
        const m = out.match(/chat on (https?:\/\/127\.0\.0\.1:(\d+))/);
        if (m) {
          clearTimeout(timer);
          this.port = Number(m[2]);
          resolve(m[1]);
        }
      });
      this.child.once('exit', (code) => {
        clearTimeout(timer);
        reject(new Error(`the node exited (${code}) before it was ready:\n${this.stderr}`));
      });
    });
    return this;
  }

  async stop(signal = 'SIGTERM') {
    if (!this.child || this.child.exitCode !== null) return;
    const exited = new Promise((resolve) => this.child.once('exit', resolve));
    this.child.kill(signal);
    await exited;
  }

  async close() {
    await this.stop();
    rmSync(this.dir, { recursive: true, force: true });
  }

  // A REST call as a client makes it (for setting the scene, never for checking the page).
  async call(method, pathname, body, token) {
    const headers = { 'Content-Type': 'application/json' };
    if (token) headers.Authorization = `Bearer ${token}`;
    const r = await fetch(this.url + pathname, { method, headers, body: body ? JSON.stringify(body) : undefined });
    const text = await r.text();
    return { status: r.status, json: text ? JSON.parse(text) : null };
  }
}

export async function launchBrowser() {
  return chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
      '--disable-component-update', '--disable-sync'],
  });
}

// One person in a browser context of their own: page errors, dialogs and CSP violations
// are collected (a test asserts there are none).
export async function openPage(browser, node, { width = 1200, height = 800 } = {}) {
  // A node with its own TLS has a certificate of a test's making: headless chromium cannot
  // be given a CA without a profile of its own, so its errors are let pass here (the
  // process tests verify the certificate, test_tls.py).
  const context = await browser.newContext({ viewport: { width, height }, ignoreHTTPSErrors: node.url.startsWith('https:') });
  const page = await context.newPage();
  const problems = [];
  page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
  page.on('dialog', (d) => { problems.push(`dialog: ${d.message()}`); d.dismiss().catch(() => {}); });
  page.on('console', (m) => {
    if (m.type() === 'error' && /Content Security Policy|Refused to/.test(m.text())) problems.push(`CSP: ${m.text()}`);
  });
  page.setDefaultTimeout(WAIT_MS);
  await page.goto(node.url + '/');
  return { context, page, problems };
}

// Registers, in the calling describe, the hooks of a suite: one node (options as Node's)
// and one browser for all its tests. Pages opened with `open` are checked at the end for
// page errors, dialogs and CSP violations.
export function browserSuite(nodeOptions = {}) {
  const suite = { node: null, browser: null, pages: [] };
  before(async () => {
    suite.node = await new Node(nodeOptions).start();
    suite.browser = await launchBrowser();
  });
  after(async () => {
    for (const p of suite.pages) assert.deepEqual(p.problems, [], 'no page errors, dialogs or CSP violations');
    await suite.browser?.close();
    await suite.node?.close();
  });
  suite.open = async (node = suite.node, opts = undefined) => {
    const p = await openPage(suite.browser, node, opts);
    suite.pages.push(p);
    return p;
  };
  return suite;
}

// Waits until the own message showing `text` is in one of the `wanted` states.
export async function waitForState(page, text, wanted, timeout = WAIT_MS) {
  await page.waitForFunction(
    ([t, w]) => [...document.querySelectorAll('[data-testid="message"]')]
      .some((el) => el.textContent.includes(t) && w.includes(el.getAttribute('data-state'))),
    [text, wanted], { timeout });
}

export async function register(page, name, password = 'correct horse battery') {
  await page.getByTestId('show-register').click();
  await page.getByTestId('login-username').fill(name);
  await page.getByTestId('login-password').fill(password);
  await page.getByTestId('register-button').click();
  await page.getByTestId('new-chat-input').waitFor();
}

export async function login(page, name, password = 'correct horse battery') {
  await page.getByTestId('login-username').fill(name);
  await page.getByTestId('login-password').fill(password);
  await page.getByTestId('login-button').click();
  await page.getByTestId('new-chat-input').waitFor();
}

export async function startChat(page, userId) {
  await page.getByTestId('new-chat-input').fill(userId);
  await page.getByTestId('new-chat-button').click();
  await page.getByTestId('composer-input').waitFor();
}

export async function send(page, text) {
  await page.getByTestId('composer-input').fill(text);
  await page.getByTestId('composer-input').press('Enter');
}

// The list item whose title is exactly `title` (a 1:1 chat's is the other person's id).
export function conversation(page, title) {
  const exact = new RegExp(`^${title.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}$`);
  return page.getByTestId('conv-item').filter({ has: page.getByTestId('conv-title').filter({ hasText: exact }) });
}

export async function openConversationWith(page, title) {
  await conversation(page, title).click();
  await page.getByTestId('composer-input').waitFor();
}

// The bubble that shows `text` (exactly one must).
export function bubble(page, text) {
  return page.getByTestId('message').filter({ hasText: text });
}

export async function screenshot(page, name) {
  mkdirSync(ARTIFACTS, { recursive: true });
  const file = path.join(ARTIFACTS, `${name}.png`);
  await page.screenshot({ path: file, fullPage: true });
  return file;
}

export const NATS_BIN = process.env.PETCHAT_NATS ?? '/usr/sbin/nats-server';

// A loopback port for a process that keeps it across restarts (a node, a nats-server). The
// process tests run beside these (tests/meson.build), so the port comes from below the
// kernel's ephemeral range (32768 on), which nothing binding port 0 or connecting out is given,
// and from a stretch the process tests' own reservations (tests/process/harness.py, below
// 32000) never use; one e2e file runs at a time (--test-concurrency=1).
export async function freePort() {
  const low = Number(readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').split(/\s+/)[0]);
  if (low <= 32700) throw new Error(`the kernel's ephemeral ports start at ${low}: the tests need 32001-32700 outside them`);
  for (let i = 0; i < 200; i += 1) {
    const port = 32001 + Math.floor(Math.random() * 700);
    const free = await new Promise((resolve) => {
      const srv = createServer();
      srv.once('error', () => resolve(false));
      srv.listen(port, '127.0.0.1', () => srv.close(() => resolve(true)));
    });
    if (free) return port;
  }
  throw new Error('no free loopback port in 32001-32700');
}

// One nats-server with JetStream on a loopback port; stop() and start() keep its port and
// store, so a restart is the same server coming back (a partition that heals).
export class NatsServer {
  constructor() {
    this.dir = mkdtempSync(path.join(tmpdir(), 'petchat-e2e-nats-'));
  }

  async start() {
    this.port ??= await freePort();
    writeFileSync(path.join(this.dir, 'nats.conf'), [
      'server_name: "e2e"', `listen: 127.0.0.1:${this.port}`,
      'jetstream {', `  store_dir: "${this.dir}/js"`, '  max_memory_store: 64MB', '  max_file_store: 1GB', '}', '',
    ].join('\n'));
    this.child = spawn(NATS_BIN, ['-c', path.join(this.dir, 'nats.conf')], { stdio: 'ignore' });
    const deadline = Date.now() + 15000;
    for (;;) {
      const up = await new Promise((resolve) => {
        const c = connect(this.port, '127.0.0.1');
        c.once('connect', () => { c.destroy(); resolve(true); });
        c.once('error', () => resolve(false));
      });
      if (up) return this;
      if (Date.now() > deadline) throw new Error('nats-server did not listen');
      await new Promise((r) => setTimeout(r, 100));
    }
  }

  get url() {
    return `nats://127.0.0.1:${this.port}`;
  }

  async stop() {
    if (!this.child || this.child.exitCode !== null) return;
    const exited = new Promise((resolve) => this.child.once('exit', resolve));
    this.child.kill('SIGTERM');
    await exited;
  }

  async close() {
    await this.stop();
    rmSync(this.dir, { recursive: true, force: true });
  }
}

// Regions federated through one nats-server: each node with the others in its directory.
export async function federatedRegions(names, nats) {
  const nodes = Object.fromEntries(names.map((n) => [n, new Node({ region: n })]));
  const keys = Object.fromEntries(names.map((n) => [n, nodes[n].init()]));
  for (const n of names) {
    const lines = ['[federation]', `nats_urls = ["${nats.url}"]`, 'reconnect_wait_ms = 200', 'publish_timeout_ms = 2000',
      'presence_interval_s = 1', 'resend_after_s = 3', 'max_stream_bytes = 67108864', `public_url = "http://${n}.example.test"`];
    for (const other of names.filter((o) => o !== n)) {
      lines.push('', '[[federation.regions]]', `name = "${other}"`, `public_keys = ["${keys[other]}"]`,
        `url = "http://${other}.example.test"`);
    }
    nodes[n].extra = lines.join('\n');
    await nodes[n].start();
  }
  return nodes;
}
