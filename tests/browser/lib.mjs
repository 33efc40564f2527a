// The shared harness of the browser scenarios: Debian's chromium driven by playwright-core,
// console errors and page errors collected (any one fails the scenario), screenshots at phone
// and laptop sizes, axe-core checks, the security headers of every page.
//
// tests/browser.rs starts the hub and the cameras and runs `node <scenario>.mjs` with:
//   HUB_URL        https://127.0.0.1:PORT
//   HUB_EMAIL      an owner's email, HUB_PASSWORD its password
//   CAMSIM_PORTS   the RTSP ports of the cameras it started, comma-separated, in camera order
//   OUT_DIR        where screenshots and downloads go (target/browser/<scenario>/)
//   SCENARIO_TIMEOUT_MS  the whole scenario's deadline (default 240000)
// plus what a scenario documents at its top. Every wait has a deadline; nothing sleeps to
// synchronise.
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { chromium } from 'playwright-core';
import axeCore from 'axe-core';

export const CHROMIUM_ARGS = [
  '--no-sandbox',
  '--disable-gpu',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--no-first-run',
  '--autoplay-policy=no-user-gesture-required',
];

export const PHONE = { width: 390, height: 844 };
export const LAPTOP = { width: 1280, height: 800 };

function need(name) {
  const v = process.env[name];
  if (!v) {
    console.error(`environment variable ${name} is not set (tests/browser.rs sets it)`);
    process.exit(2);
  }
  return v;
}

export const env = {
  url: need('HUB_URL').replace(/\/$/, ''),
  email: need('HUB_EMAIL'),
  password: need('HUB_PASSWORD'),
  out: need('OUT_DIR'),
  ports: (process.env.CAMSIM_PORTS || '').split(',').filter(Boolean).map(Number),
  get(name) {
    return need(name);
  },
};

const t0 = Date.now();
export function log(msg) {
  console.log(`[${((Date.now() - t0) / 1000).toFixed(1)} s] ${msg}`);
}

export function check(cond, msg) {
  if (!cond) throw new Error(`check failed: ${msg}`);
}

/** The scenario's handle: the page, its context and the helpers bound to them. */
class Session {
  constructor(browser, context, page, name) {
    this.browser = browser;
    this.context = context;
    this.page = page;
    this.name = name;
    this.problems = [];
    this.allowed = [];
    this.axeRuns = 0;
    this.attach(page);
  }

  attach(page) {
    page.setDefaultTimeout(20_000);
    page.on('console', (m) => {
      if (m.type() !== 'error') return;
      const loc = m.location();
      const text = `${m.text()}${loc && loc.url ? ` (${loc.url}:${loc.lineNumber})` : ''}`;
      if (this.allowed.some((a) => a.re.test(text))) {
        log(`console error (expected: ${this.allowed.find((a) => a.re.test(text)).why}): ${text}`);
        return;
      }
      this.problems.push(`console error: ${text}`);
      log(`console error: ${text}`);
    });
    page.on('pageerror', (e) => {
      this.problems.push(`page error: ${e.message}`);
      log(`page error: ${e.message}`);
    });
  }

  /** A console error matching `re` is expected (say why); every other one fails. */
  allowConsole(re, why) {
    this.allowed.push({ re, why });
  }

  /** Navigates to `path` and checks the document's security headers; returns the response. */
  async goto(path, { status } = {}) {
    const resp = await this.page.goto(env.url + path, { waitUntil: 'load' });
    check(resp, `no response for ${path}`);
    if (status !== undefined) check(resp.status() === status, `GET ${path}: status ${resp.status()}, wanted ${status}`);
    checkHeaders(resp, path);
    return resp;
  }

  /** Signs in through the form; waits for the form to go and the nav to appear. */
  async signIn(email = env.email, password = env.password) {
    const form = this.page.locator('form#signin');
    await form.waitFor();
    await form.locator('input[name=email]').fill(email);
    await form.locator('input[name=password]').fill(password);
    await form.locator('button[type=submit]').click();
    await this.page.locator('nav').waitFor();
    await form.waitFor({ state: 'detached' });
  }

  /**
   * Signs in through the API (the session cookie lands in the context, shared with the page),
   * so a scenario about another page does not start on the signed-out 401.
   */
  async signInApi() {
    const r = await this.api('POST', '/api/session', { email: env.email, password: env.password });
    check(r.status === 200, `POST /api/session: ${r.status} ${r.text.slice(0, 200)}`);
  }

  /** Opens the app at `path` signed in; waits for the nav. */
  async open(path) {
    if (!(await this.context.cookies(env.url)).length) await this.signInApi();
    await this.goto(path, { status: 200 });
    await this.page.locator('nav').waitFor();
  }

  /** Screenshots the page at phone and laptop sizes into OUT_DIR/<name>-{phone,laptop}.png. */
  async screenshot(name) {
    for (const [label, size] of [
      ['phone', PHONE],
      ['laptop', LAPTOP],
    ]) {
      await this.page.setViewportSize(size);
      // Two animation frames: the layout for the new size has been painted.
      await this.page.evaluate(() => new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r))));
      const file = join(env.out, `${name}-${label}.png`);
      await this.page.screenshot({ path: file, fullPage: true });
      log(`screenshot ${file}`);
    }
    await this.page.setViewportSize(LAPTOP);
  }

  /**
   * Runs axe-core on the page as it is; fails on any serious or critical violation, naming
   * the rule ids and targets. axe goes in through the DevTools protocol (page.evaluate), which
   * the page's strict CSP does not block, unlike an injected <script> tag.
   */
  async axe(label) {
    const has = await this.page.evaluate(() => typeof window.axe !== 'undefined');
    if (!has) await this.page.evaluate(axeCore.source);
    const res = await this.page.evaluate(async () => {
      const r = await window.axe.run(document, { resultTypes: ['violations'] });
      return r.violations.map((v) => ({
        id: v.id,
        impact: v.impact,
        help: v.help,
        targets: v.nodes.map((n) => n.target.join(' ')),
      }));
    });
    this.axeRuns++;
    const bad = res.filter((v) => v.impact === 'serious' || v.impact === 'critical');
    for (const v of res) {
      log(`axe ${label}: ${v.impact} ${v.id} (${v.help}) at ${v.targets.slice(0, 5).join(', ')}${v.targets.length > 5 ? ', …' : ''}`);
    }
    if (bad.length) {
      throw new Error(
        `axe on ${label}: ${bad.length} serious/critical violation(s): ` +
          bad.map((v) => `${v.id} [${v.targets.slice(0, 5).join(', ')}]`).join('; '),
      );
    }
    log(`axe ${label}: no serious or critical violation (${res.length} minor)`);
  }

  /** A JSON API call with the page's session (the context's cookies); returns the parsed body. */
  async api(method, path, body) {
    const opts = { failOnStatusCode: false, timeout: 20_000 };
    if (body !== undefined) {
      opts.data = JSON.stringify(body);
      opts.headers = { 'content-type': 'application/json' };
    }
    const r = await this.context.request.fetch(env.url + path, { method, ...opts });
    const text = await r.text();
    let json = null;
    try {
      json = text ? JSON.parse(text) : null;
    } catch {
      json = null;
    }
    return { status: r.status(), json, text, headers: r.headers() };
  }

  async apiJson(path) {
    const r = await this.api('GET', path);
    check(r.status === 200, `GET ${path}: ${r.status} ${r.text.slice(0, 200)}`);
    return r.json;
  }

  /** Calls `f` (async) until it returns a truthy value, every `every` ms, for at most `timeout` ms. */
  async poll(what, timeout, f, every = 500) {
    const deadline = Date.now() + timeout;
    for (;;) {
      const v = await f();
      if (v) return v;
      if (Date.now() >= deadline) throw new Error(`timed out after ${timeout} ms waiting for ${what}`);
      await new Promise((r) => setTimeout(r, every));
    }
  }
}

/** The contract's headers on a document response. */
export function checkHeaders(resp, what) {
  const h = resp.headers();
  const csp = h['content-security-policy'] || '';
  check(csp.includes("frame-ancestors 'none'"), `${what}: Content-Security-Policy with frame-ancestors 'none' (got ${JSON.stringify(csp)})`);
  check(csp.includes("default-src 'none'"), `${what}: Content-Security-Policy with default-src 'none' (got ${JSON.stringify(csp)})`);
  check(h['x-content-type-options'] === 'nosniff', `${what}: X-Content-Type-Options nosniff (got ${h['x-content-type-options']})`);
  check(h['referrer-policy'] === 'no-referrer', `${what}: Referrer-Policy no-referrer (got ${h['referrer-policy']})`);
}

/**
 * Runs one scenario: a browser, one context, one page; `fn(session)` does the steps. Exits
 * non-zero on a failed step, a console or page error, or the deadline.
 */
export async function scenario(name, fn) {
  mkdirSync(env.out, { recursive: true });
  const timeout = Number(process.env.SCENARIO_TIMEOUT_MS || 240_000);
  const timer = setTimeout(() => {
    console.error(`FAIL ${name}: the scenario's deadline of ${timeout} ms passed`);
    process.exit(1);
  }, timeout);
  const browser = await chromium.launch({ executablePath: '/usr/bin/chromium', args: CHROMIUM_ARGS, timeout: 30_000 });
  log(`${name}: chromium ${browser.version()}`);
  const context = await browser.newContext({ ignoreHTTPSErrors: true, viewport: LAPTOP, acceptDownloads: true });
  const page = await context.newPage();
  const s = new Session(browser, context, page, name);
  let failure = null;
  try {
    await fn(s);
  } catch (e) {
    failure = e;
    try {
      await page.screenshot({ path: join(env.out, 'failure.png'), fullPage: true });
      writeFileSync(join(env.out, 'failure.html'), await page.content());
      log(`the page at the failure: ${page.url()} (failure.png, failure.html in ${env.out})`);
    } catch {
      // The page may be gone; the error itself is what counts.
    }
  }
  await browser.close().catch(() => {});
  clearTimeout(timer);
  const secs = ((Date.now() - t0) / 1000).toFixed(1);
  if (failure || s.problems.length) {
    if (failure) console.error(`FAIL ${name}: ${failure.stack || failure}`);
    for (const p of s.problems) console.error(`FAIL ${name}: ${p}`);
    console.error(`scenario ${name} failed after ${secs} s`);
    process.exit(1);
  }
  console.log(`scenario ${name} passed in ${secs} s`);
}

/** True when the image's pixels carry colour: max(|r-g|, |g-b|) over its pixels (in the page). */
export async function imageChroma(locator) {
  return locator.evaluate(async (img) => {
    if (!img.complete || img.naturalWidth === 0) {
      await new Promise((res, rej) => {
        img.addEventListener('load', res, { once: true });
        img.addEventListener('error', () => rej(new Error(`image ${img.src} did not load`)), { once: true });
      });
    }
    const c = document.createElement('canvas');
    c.width = img.naturalWidth;
    c.height = img.naturalHeight;
    const g = c.getContext('2d');
    g.drawImage(img, 0, 0);
    const d = g.getImageData(0, 0, c.width, c.height).data;
    let max = 0;
    let sum = 0;
    for (let i = 0; i < d.length; i += 4) {
      const m = Math.max(Math.abs(d[i] - d[i + 1]), Math.abs(d[i + 1] - d[i + 2]));
      sum += m;
      if (m > max) max = m;
    }
    return { max, mean: sum / (d.length / 4), width: c.width, height: c.height };
  });
}

/** Waits until the video's currentTime passes `seconds`; returns it. */
export async function videoAdvances(page, selector, seconds, timeout = 30_000) {
  await page.waitForFunction(
    ([sel, s]) => {
      const v = document.querySelector(sel);
      return v && v.currentTime > s && !v.error;
    },
    [selector, seconds],
    { timeout, polling: 200 },
  );
  return page.$eval(selector, (v) => v.currentTime);
}
