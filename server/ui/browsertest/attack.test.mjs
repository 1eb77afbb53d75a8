// An agent's page at the relay's origin must not act with the inspector's
// session. browser_test.go (TestRelayedPageCannotActAsInspector) starts the
// stack and runs this script with BASE_URL, CONTROL_URL, ADMIN_TOKEN and
// CHROMIUM; it then checks that no token named "stolen" exists.
//
// The admin signs in; a channel gets an agent whose app answers
// /h/CHANNEL/evil with an HTML page that runs a script creating a token
// through the session cookie, and /h/CHANNEL/cookie with a cookie named
// like the session. The admin opens both. It exits non-zero on the first failed check.
import { chromium } from 'playwright-core';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

const env = process.env;
setTimeout(() => {
  console.error('the browser script took over 50 s');
  process.exit(2);
}, 50_000).unref();
const BASE = env.BASE_URL;
const CONTROL = env.CONTROL_URL;

function check(cond, msg) {
  if (!cond) throw new Error(`check failed: ${msg}`);
}

async function json(url, opts = {}) {
  const res = await fetch(url, opts);
  const text = await res.text();
  if (!res.ok) throw new Error(`${opts.method || 'GET'} ${url}: ${res.status} ${text}`);
  return text ? JSON.parse(text) : null;
}

const admin = { Authorization: `Bearer ${env.ADMIN_TOKEN}`, 'Content-Type': 'application/json' };
const channel = (await json(`${BASE}/api/v1/channels`, { method: 'POST', headers: admin, body: '{"team":"alpha"}' })).id;
await json(`${CONTROL}/agents?channel=${channel}&token=${encodeURIComponent(env.ADMIN_TOKEN)}`, { method: 'POST' });

const userDataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'hookrelay-chromium-'));
const context = await chromium.launchPersistentContext(userDataDir, {
  executablePath: env.CHROMIUM || '/usr/bin/chromium',
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
});
try {
  const page = context.pages()[0] || (await context.newPage());
  page.setDefaultTimeout(10000);
  const session = async () => (await context.cookies(BASE)).find((c) => c.name === 'hookrelay_session');

  await page.goto(`${BASE}/`);
  await page.getByLabel('Token or read key').fill(env.ADMIN_TOKEN);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.getByRole('heading', { name: 'Channels' }).waitFor();
  const before = await session();
  check(before, 'no session cookie after signing in');
  console.log('signed in as the relay admin');

  // The page loads whole (its script, had it run, made a synchronous request).
  const res = await page.goto(`${BASE}/h/${channel}/evil`, { waitUntil: 'load' });
  check(res.status() === 200, `the relayed page answered ${res.status()}`);
  check((await page.locator('p').textContent()) === 'after the script', 'the relayed page did not load whole');
  const title = await page.title();
  check(title === 'relayed', `the relayed page's script ran: ${title}`);
  const headers = await res.allHeaders();
  check(/\bsandbox\b/.test(headers['content-security-policy'] || ''), `Content-Security-Policy: ${headers['content-security-policy']}`);
  console.log('the relayed page ran no script');

  // An answer that sets a cookie named like the session does not replace it.
  await page.goto(`${BASE}/h/${channel}/cookie`, { waitUntil: 'load' });
  const after = await session();
  check(after && after.value === before.value, `the session cookie changed to ${after && after.value}`);
  console.log('the relayed answer left the session cookie alone');

  // The admin's session still works.
  await page.goto(`${BASE}/`);
  await page.getByRole('heading', { name: 'Channels' }).waitFor();
} finally {
  await context.close();
  fs.rmSync(userDataDir, { recursive: true, force: true });
}
