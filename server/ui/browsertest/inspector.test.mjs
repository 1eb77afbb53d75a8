// The inspector in real headless Chromium, driven by playwright-core.
// browser_test.go starts the relay, the target app and a control server,
// and runs this script with:
//
//   BASE_URL        the relay
//   CONTROL_URL     POST /agents?channel=&token= starts an agent; GET /requests lists what the app got
//   TEAM_A_TOKEN    member token of team alpha
//   TEAM_B_TOKEN    member token of team beta
//   CHROMIUM        the browser binary
//   SCREENSHOT_DIR  where screenshots go
//   DOCS_SCREENSHOT when set, the README's screenshot is written there
//
// It exits non-zero on the first failed check.
import { chromium } from 'playwright-core';
import { execFile } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';

const env = process.env;
// A watchdog: a hung step fails the run rather than waiting for the Go test's timeout.
setTimeout(() => {
  console.error('the browser script took over 100 s');
  process.exit(2);
}, 100_000).unref();
const BASE = env.BASE_URL;
const CONTROL = env.CONTROL_URL;
const SHOTS = env.SCREENSHOT_DIR || os.tmpdir();
const started = Date.now();

function log(msg) {
  console.log(`[${((Date.now() - started) / 1000).toFixed(2)}s] ${msg}`);
}

function check(cond, msg) {
  if (!cond) throw new Error(`check failed: ${msg}`);
}

async function waitFor(fn, ms, what) {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

const sha256 = (b) => crypto.createHash('sha256').update(b).digest('hex');

/** post sends a webhook with exactly these headers, as a provider would. */
function post(url, headers, body) {
  return new Promise((resolve, reject) => {
    const req = http.request(url, { method: 'POST', headers: { ...headers, 'Content-Length': body.length }, agent: false }, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode, headers: res.headers, body: Buffer.concat(chunks) }));
    });
    req.on('error', reject);
    req.end(body);
  });
}

async function json(url, opts = {}) {
  const res = await fetch(url, opts);
  const text = await res.text();
  if (!res.ok) throw new Error(`${opts.method || 'GET'} ${url}: ${res.status} ${text}`);
  return text ? JSON.parse(text) : null;
}

const appRequests = () => json(`${CONTROL}/requests`);

function bash(script) {
  return new Promise((resolve, reject) => {
    const child = execFile('bash', ['-s'], { maxBuffer: 16 << 20 }, (err, stdout, stderr) => (err ? reject(new Error(`${err.message}\n${stderr}`)) : resolve(stdout)));
    child.stdin.end(script);
  });
}

const userDataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'hookrelay-chromium-'));
const context = await chromium.launchPersistentContext(userDataDir, {
  executablePath: env.CHROMIUM || '/usr/bin/chromium',
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  viewport: { width: 1280, height: 800 },
  colorScheme: 'light',
  timezoneId: 'UTC',
  locale: 'en-GB',
});
const errors = [];
try {
  await context.grantPermissions(['clipboard-read', 'clipboard-write'], { origin: BASE });
  const page = context.pages()[0] || (await context.newPage());
  page.setDefaultTimeout(5000);
  page.on('pageerror', (e) => errors.push(`page error: ${e.message}`));
  page.on('console', (m) => {
    // A refused sign-in is a 401 the browser logs; anything else is a bug.
    if (m.type() === 'error' && !m.text().startsWith('Failed to load resource')) errors.push(`console: ${m.text()}`);
  });
  const sessionCookie = async () => (await context.cookies(BASE)).find((c) => c.name === 'hookrelay_session');

  // --- a wrong token cannot sign in
  await page.goto(`${BASE}/`);
  await page.getByLabel('Token or read key').fill('hr_this_is_not_a_token');
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.getByRole('alert').filter({ hasText: 'rejected' }).waitFor();
  check(!(await sessionCookie()), 'a wrong token got a session cookie');
  log('wrong token refused, no cookie');

  // --- sign in as team alpha
  await page.getByLabel('Token or read key').fill(env.TEAM_A_TOKEN);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.getByRole('heading', { name: 'Channels' }).waitFor();
  const cookie = await sessionCookie();
  check(cookie && cookie.httpOnly && cookie.sameSite === 'Strict', `session cookie ${JSON.stringify(cookie)}`);
  check((await page.locator('#who-label').textContent()).includes('alpha'), 'the page does not say team alpha');
  log('signed in as alpha');

  // --- create a channel
  await page.getByLabel('Name (optional)').fill('alpha-github');
  await page.getByRole('button', { name: 'Create channel' }).click();
  const ingress = (await page.locator('#created-url').textContent()).trim();
  check(ingress === `${BASE}/h/alpha-github`, `ingress URL ${ingress}`);
  check((await page.locator('#created-read-key').textContent()).startsWith('rk_alpha-github.'), 'no read key shown');
  await page.locator('tr[data-channel="alpha-github"]').waitFor();
  await page.screenshot({ path: path.join(SHOTS, 'channels.png') });
  log('channel created');

  // --- open it and connect an agent
  await page.getByRole('link', { name: 'alpha-github' }).first().click();
  await page.locator('.live.on').waitFor();
  await json(`${CONTROL}/agents?channel=alpha-github&token=${encodeURIComponent(env.TEAM_A_TOKEN)}`, { method: 'POST' });
  await page.locator('.agent').filter({ hasText: 'browser-test-host' }).waitFor({ timeout: 6000 });
  log('agent connected and listed');
  await page.keyboard.press('?');
  await page.getByRole('dialog', { name: 'Keyboard shortcuts' }).waitFor();
  await page.keyboard.press('Escape');
  await page.getByRole('dialog', { name: 'Keyboard shortcuts' }).waitFor({ state: 'hidden' });

  // --- a webhook appears within 2 s, without a reload
  await page.evaluate(() => { window.hookrelayNoReload = true; });
  const payload = {
    ref: 'refs/heads/main',
    repository: { id: 123456789, full_name: 'acme/app', private: true },
    pusher: { name: "o'neil" },
    head_commit: { id: 'abc123', message: 'Fix "quotes" & unicode: é 😀\nsecond line' },
    forced: false,
    commits: [],
  };
  const jsonBody = Buffer.from(JSON.stringify(payload));
  const ghHeaders = {
    'User-Agent': 'GitHub-Hookshot/044aadd',
    'Content-Type': 'application/json',
    'X-GitHub-Event': 'push',
    'X-GitHub-Delivery': crypto.randomUUID(),
    'X-Hub-Signature-256': `sha256=${crypto.createHmac('sha256', 'secret').update(jsonBody).digest('hex')}`,
    'X-Sig': 'a\u00ffb', // node sends the byte 0xff: a value that is not UTF-8
  };
  const sentAt = Date.now();
  const posted = post(`${ingress}/github?source=test`, ghHeaders, jsonBody);
  const row = page.getByRole('option', { name: /\/github\?source=test, push/ });
  await row.waitFor({ timeout: 2000 });
  const appeared = Date.now() - sentAt;
  check(await page.evaluate(() => window.hookrelayNoReload === true), 'the page reloaded');
  const res = await posted;
  check(res.status === 200 && res.body.toString().includes('"ok":true'), `sender got ${res.status} ${res.body}`);
  const eventID = res.headers['hookrelay-event-id'];
  await row.locator('.c-status', { hasText: '200' }).waitFor({ timeout: 3000 });
  log(`webhook listed ${appeared} ms after it was sent; delivered with 200`);

  // More providers, for the event names.
  await post(`${ingress}/stripe`, { 'Content-Type': 'application/json; charset=utf-8', 'Stripe-Signature': 't=1,v1=x' },
    Buffer.from(JSON.stringify({ id: 'evt_1', object: 'event', type: 'invoice.paid', data: { object: { amount_paid: 4200 } } })));
  await post(`${ingress}/slack`, { 'Content-Type': 'application/x-www-form-urlencoded', 'X-Slack-Signature': 'v0=x' },
    Buffer.from(`payload=${encodeURIComponent(JSON.stringify({ type: 'block_actions', user: { id: 'U1' } }))}`));
  await page.getByRole('option', { name: /\/stripe, invoice\.paid/ }).waitFor();
  await page.getByRole('option', { name: /\/slack, block_actions/ }).waitFor();
  await page.screenshot({ path: path.join(SHOTS, 'events.png') });
  log('Stripe and Slack event names shown');

  // --- open the GitHub event with the keyboard: headers and pretty JSON
  await page.locator('#main').focus();
  for (let i = 0; i < 3; i++) await page.keyboard.press('j');
  check((await page.locator('[aria-selected="true"]').getAttribute('data-id')) === eventID, 'j did not reach the GitHub event');
  await page.keyboard.press('Enter');
  await page.locator('#event-title').filter({ hasText: '/github?source=test' }).waitFor();
  check(page.url().endsWith(`/#/c/alpha-github/${eventID}`), `URL ${page.url()}`);
  const headerRow = page.locator('#headers tr').filter({ has: page.locator('th', { hasText: /^X-GitHub-Event$/ }) });
  check((await headerRow.locator('td').textContent()) === 'push', 'X-GitHub-Event header not shown');
  const sigRow = page.locator('#headers tr').filter({ has: page.locator('th', { hasText: /^X-Sig$/ }) });
  const sigText = await sigRow.locator('td').textContent();
  check(sigText === 'a\\xffb', `a header value that is not UTF-8 is shown as ${JSON.stringify(sigText)}, want a\\xffb`);
  const names = await page.locator('#headers th').allTextContents();
  const sent = Object.keys(ghHeaders);
  check(names.filter((n) => sent.includes(n)).join(',') === sent.join(','), `headers in order, with their case: ${names}`);
  const pretty = await page.locator('#body-pretty').textContent();
  check(pretty === JSON.stringify(payload, null, 2), `pretty JSON:\n${pretty}`);
  check((await page.locator('#body-pretty .j-key').first().textContent()) === '"ref"', 'JSON keys are not highlighted');
  await page.getByRole('button', { name: 'Raw' }).click();
  check((await page.locator('#body-raw').textContent()) === jsonBody.toString(), 'raw body differs');
  await page.getByRole('button', { name: /^Pretty/ }).click();
  check((await page.locator('#event-name').textContent()) === 'push', 'event name');
  check((await page.locator('#deliveries > li').count()) === 1, 'want one delivery');
  const strayText = await page.locator('section[aria-labelledby="deliveries-title"]').evaluate(
    (s) => [...s.childNodes].filter((n) => n.nodeType === Node.TEXT_NODE).map((n) => n.textContent).join(''));
  check(strayText === '', `the Deliveries section prints ${JSON.stringify(strayText)} between its parts`);
  check((await page.locator('#deliveries').textContent()).includes('"received"'), 'the app\'s response body is not shown');
  await page.screenshot({ path: path.join(SHOTS, 'event.png') });
  if (env.DOCS_SCREENSHOT) {
    await page.evaluate(() => window.scrollTo(0, 0));
    await page.locator('#detail').evaluate((d) => d.scrollTo(0, 0));
    await page.screenshot({ path: env.DOCS_SCREENSHOT });
    log(`wrote ${env.DOCS_SCREENSHOT}`);
  }
  log('event view: headers, pretty JSON, raw toggle, delivery');

  // --- replay with the keyboard: a second delivery reaches the app
  await page.keyboard.press('r');
  await waitFor(async () => (await appRequests()).filter((r) => r.event_id === eventID).length === 2, 5000, 'the replayed delivery at the app');
  await waitFor(async () => (await page.locator('#deliveries > li').count()) === 2, 3000, 'the second delivery on the page');
  log('replayed: the app got it twice, the page shows both attempts');

  // --- edit and replay: a header changed and one added, a new body, re-signed
  const authJSON = { Authorization: `Bearer ${env.TEAM_A_TOKEN}`, 'Content-Type': 'application/json' };
  const setVerify = (body) => json(`${BASE}/api/v1/channels/alpha-github`, { method: 'PATCH', headers: authJSON, body: JSON.stringify(body) });
  await setVerify({ verify: 'github', secret: 'secret' });
  await page.getByRole('button', { name: 'Edit and replay' }).click();
  const headersBox = page.getByLabel(/^Headers, one per line/);
  const lines = (await headersBox.inputValue()).split('\n');
  const editorNames = lines.map((l) => l.slice(0, l.indexOf(':'))).filter((n) => sent.includes(n));
  check(editorNames.join(',') === sent.join(','), `the editor's headers, in order: ${lines.join(' | ')}`);
  check(lines.includes('X-GitHub-Event: push'), 'the editor lacks X-GitHub-Event: push');
  await headersBox.fill(lines.map((l) => (l === 'X-GitHub-Event: push' ? 'X-GitHub-Event: ping' : l)).concat('X-Edited: yes').join('\n'));
  const bodyBox = page.getByLabel(/^Body \(sent byte for byte/);
  check((await bodyBox.inputValue()) === jsonBody.toString(), 'the editor does not hold the body');
  const editedBody = JSON.stringify({ zen: 'Edited in the inspector', hook_id: 7 });
  await bodyBox.fill(editedBody);
  const resignBox = page.getByLabel(/^Re-sign with the channel/);
  await waitFor(async () => !(await resignBox.isDisabled()), 3000, 'the re-sign option to be enabled');
  await resignBox.check();
  await page.screenshot({ path: path.join(SHOTS, 'edit-replay.png') });
  await page.getByRole('button', { name: 'Replay edited' }).click();
  const resultLink = page.locator('#edit-result-link');
  await resultLink.waitFor({ timeout: 3000 });
  const editedID = (await resultLink.textContent()).trim();
  const editedAtApp = await waitFor(async () => (await appRequests()).find((r) => r.event_id === editedID), 5000, 'the edited replay at the app');
  check(editedAtApp.sig_ok, 'the app rejects the re-signed signature');
  check(editedAtApp.github_event === 'ping' && editedAtApp.edited === 'yes' && editedAtApp.sha256 === sha256(Buffer.from(editedBody)),
    `the app got ${JSON.stringify(editedAtApp)}`);
  const editedEvent = await json(`${BASE}/api/v1/events/${editedID}`, { headers: authJSON });
  check(editedEvent.replay_of === eventID, `replay_of ${editedEvent.replay_of}`);
  // Linked both ways: the original lists it; it names the original.
  await page.locator('#edited-replays a', { hasText: editedID }).waitFor({ timeout: 3000 });
  await page.getByRole('option', { name: /\/github\?source=test, ping, edited replay/ }).waitFor();
  await resultLink.click();
  await page.locator('#replay-of a', { hasText: eventID }).waitFor();
  await waitFor(async () => (await page.locator('#deliveries > li').count()) === 1, 3000, "the edited replay's delivery");
  await page.locator('#replay-of a').click();
  await page.locator('#edited-replays a', { hasText: editedID }).waitFor();
  check(page.url().endsWith(`/#/c/alpha-github/${eventID}`), `back on the original: ${page.url()}`);
  await setVerify({ verify: 'none' });
  log(`edited, re-signed replay ${editedID}: the app verified it; linked to and from the original`);

  // --- copy as curl, run it: the app gets the same bytes
  await page.getByRole('button', { name: 'Copy as curl' }).click();
  const curl = await page.locator('#curl-out').textContent();
  const clip = await page.evaluate(() => navigator.clipboard.readText().catch(() => null));
  check(clip === null || clip === curl, 'the clipboard holds another command than the page shows');
  const before = (await appRequests()).length;
  await bash(curl);
  const got = await waitFor(async () => (await appRequests()).slice(before).find((r) => r.event_id !== eventID), 5000, 'the curl request at the app');
  check(got.sha256 === sha256(jsonBody), `the app got other bytes: ${got.sha256} != ${sha256(jsonBody)}`);
  check(got.github_event === 'push' && got.path === '/webhooks/github?source=test' && got.method === 'POST', `curl request ${JSON.stringify(got)}`);
  const auth = { headers: { Authorization: `Bearer ${env.TEAM_A_TOKEN}` } };
  const [orig, copy] = await Promise.all([json(`${BASE}/api/v1/events/${eventID}`, auth), json(`${BASE}/api/v1/events/${got.event_id}`, auth)]);
  const strip = (hs) => hs.filter((h) => !/^(host|content-length)$/i.test(h.name)).map((h) => `${h.name}: ${h.value}`);
  check(JSON.stringify(strip(copy.headers)) === JSON.stringify(strip(orig.headers)), `headers differ:\n${strip(orig.headers).join('\n')}\n---\n${strip(copy.headers).join('\n')}`);
  check(copy.body === orig.body && copy.query === orig.query && copy.path === orig.path, 'stored copy differs');
  await page.getByRole('option', { name: new RegExp(`/github\\?source=test, push`) }).nth(1).waitFor();
  log(`curl reproduced the request: same body (sha256 ${got.sha256.slice(0, 12)}…), same headers in order`);

  // --- a binary body: hex view and curl
  const binary = Buffer.concat([Buffer.from([0, 1, 2, 0x0d, 0x0a, 0xff, 0x27, 0x5c]), crypto.randomBytes(600)]);
  const binRes = await post(`${ingress}/binary`, { 'Content-Type': 'application/octet-stream' }, binary);
  const binID = binRes.headers['hookrelay-event-id'];
  await page.getByRole('option', { name: /\/binary,/ }).click();
  await page.locator('#event-title').filter({ hasText: '/binary' }).waitFor();
  const hex = await page.locator('#body-raw').textContent();
  check(hex.startsWith('00000000  00 01 02 0d 0a ff 27 5c'), `hex dump: ${hex.slice(0, 80)}`);
  check((await page.getByRole('link', { name: 'Download body' }).getAttribute('href')) === `/api/v1/events/${binID}/body`, 'download link');
  const download = await page.evaluate(async (id) => {
    const r = await fetch(`/api/v1/events/${id}/body`);
    return Array.from(new Uint8Array(await r.arrayBuffer()));
  }, binID);
  check(sha256(Buffer.from(download)) === sha256(binary), 'the downloaded body differs');
  await page.keyboard.press('c');
  const binCurl = await page.locator('#curl-out').textContent();
  const n = (await appRequests()).length;
  await bash(binCurl);
  const binGot = await waitFor(async () => (await appRequests()).slice(n).find((r) => r.path === '/webhooks/binary'), 5000, 'the binary curl request');
  check(binGot.sha256 === sha256(binary), 'binary bytes changed through curl');
  log('binary body: hex dump, download and curl keep every byte');

  // --- filters run on the relay
  await page.keyboard.press('Escape');
  await page.getByLabel('Search').fill('acme/app');
  await waitFor(async () => {
    const labels = await page.locator('#events > li').evaluateAll((els) => els.map((e) => e.getAttribute('aria-label')));
    return labels.length === 2 && labels.every((l) => l.includes('/github'));
  }, 3000, 'the text filter');
  await page.getByLabel('Search').fill('');
  await page.getByLabel('Method').selectOption('GET');
  await page.getByText('No event matches these filters.').waitFor();
  await page.getByLabel('Method').selectOption('');
  await page.getByLabel('Status').fill('404');
  await page.getByText('No event matches these filters.').waitFor();
  await page.getByRole('button', { name: 'Clear' }).click();
  await waitFor(async () => (await page.locator('#events > li').count()) === 7, 3000, 'all seven events after clearing');
  log('filters: text, method and status, server-side');

  // --- older events load on scroll
  for (let i = 0; i < 50; i++) await post(`${ingress}/bulk/${i}`, { 'Content-Type': 'text/plain' }, Buffer.from(`event ${i}`));
  await waitFor(async () => (await page.locator('#events > li').count()) === 57, 5000, 'the bulk events, live');
  await page.reload();
  await waitFor(async () => (await page.locator('#events > li').count()) === 50, 5000, 'the first page of 50');
  await page.locator('.more').scrollIntoViewIfNeeded();
  await waitFor(async () => (await page.locator('#events > li').count()) === 57, 5000, 'the older events after scrolling');
  // The older rows get their event names from the summaries a moment later.
  await waitFor(async () => (await page.getByRole('option', { name: /\/github\?source=test, push/ }).count()) === 2, 3000, 'the oldest events, named');
  log('older events loaded on scroll');

  // --- dark theme and a phone
  await page.emulateMedia({ colorScheme: 'dark' });
  await page.getByRole('option', { name: /\/stripe,/ }).click();
  await page.locator('#body-pretty').waitFor();
  await page.screenshot({ path: path.join(SHOTS, 'event-dark.png') });
  await page.setViewportSize({ width: 390, height: 844 });
  await page.screenshot({ path: path.join(SHOTS, 'phone-event.png') });
  await page.setViewportSize({ width: 1280, height: 800 });
  await page.emulateMedia({ colorScheme: 'light' });

  // --- sign out, then team beta never sees alpha's channel
  await page.getByRole('button', { name: 'Sign out' }).click();
  await page.getByRole('heading', { name: 'Sign in to the inspector' }).waitFor();
  check(!(await sessionCookie()), 'the session cookie outlived sign-out');
  await page.getByLabel('Token or read key').fill(env.TEAM_B_TOKEN);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.getByRole('heading', { name: 'Channels' }).waitFor();
  await page.getByText('No channels yet.').waitFor();
  check(!(await page.content()).includes('alpha-github'), "beta's channel list names alpha's channel");
  // beta creates a channel and deletes it again, through the confirmation dialog.
  await page.getByLabel('Name (optional)').fill('beta-temp');
  await page.getByRole('button', { name: 'Create channel' }).click();
  await page.locator('tr[data-channel="beta-temp"]').waitFor();
  await page.getByRole('button', { name: 'Delete channel beta-temp' }).click();
  await page.getByRole('dialog').getByRole('button', { name: 'Cancel' }).click();
  check(await page.locator('tr[data-channel="beta-temp"]').count() === 1, 'Cancel deleted the channel');
  await page.getByRole('button', { name: 'Delete channel beta-temp' }).click();
  await page.getByRole('dialog').getByRole('button', { name: 'Delete channel' }).click();
  await page.getByText('No channels yet.').waitFor();
  await page.goto(`${BASE}/#/c/alpha-github`);
  await page.getByRole('heading', { name: 'Channel not found' }).waitFor();
  const status = await page.evaluate(async () => (await fetch('/api/v1/channels/alpha-github/events')).status);
  check(status === 404, `beta reading alpha's events: ${status}`);
  await page.goto(`${BASE}/#/c/alpha-github/${eventID}`);
  await page.getByRole('heading', { name: 'Channel not found' }).waitFor();
  check(!(await page.content()).includes('acme/app'), "beta's page shows alpha's event");
  log("team beta sees none of alpha's channels or events");

  check(errors.length === 0, `errors in the page:\n${errors.join('\n')}`);
  log('all checks passed');
} finally {
  await context.close();
  fs.rmSync(userDataDir, { recursive: true, force: true });
}
