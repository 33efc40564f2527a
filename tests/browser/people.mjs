// People through the page: the owner turns on two-factor (QR code, a code computed here from
// the secret the page shows, recovery codes), signs out and in again with a code, adds a
// viewer and shares one camera with them (a second browser context, signed in as the viewer,
// sees that camera's tile and not the other), reads the audit and security pages, then
// presses "Sign out everywhere and rotate device credentials": the viewer's context is
// signed out on its next request, and after signing in again (with a recovery code) the
// audit page shows the action. Every page: axe, screenshots, no unexpected console errors.
// Two cameras (ids 1 and 2).
import { createHmac } from 'node:crypto';
import { scenario, env, log, check, CHROMIUM_ARGS, LAPTOP } from './lib.mjs';

const VIEWER = 'viewer@example.com';
const VIEWER_PASSWORD = 'a long viewer password';

/** RFC 6238 (SHA-1, 6 digits, 30 s) for a base32 secret at step `step`. */
function totp(secret, step) {
  let bits = 0;
  let acc = 0;
  const key = [];
  for (const c of secret.replace(/\s/g, '').toUpperCase()) {
    const v = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567'.indexOf(c);
    check(v >= 0, `base32 secret, got ${JSON.stringify(secret)}`);
    acc = ((acc << 5) | v) & 0xffff;
    bits += 5;
    if (bits >= 8) {
      bits -= 8;
      key.push((acc >> bits) & 0xff);
    }
  }
  const msg = Buffer.alloc(8);
  msg.writeBigUInt64BE(BigInt(step));
  const d = createHmac('sha1', Buffer.from(key)).update(msg).digest();
  const o = d[19] & 0xf;
  const n = ((d[o] & 0x7f) << 24) | (d[o + 1] << 16) | (d[o + 2] << 8) | d[o + 3];
  return String(n % 1_000_000).padStart(6, '0');
}

const stepNow = () => Math.floor(Date.now() / 30_000);

await scenario('people', async (s) => {
  const { page } = s;
  s.allowConsole(/status of 401/, 'signed out, and the sign-in that asks for a code, answer 401');

  // --- two-factor ---
  await s.goto('/account', { status: 401 });
  await s.signIn();
  await page.waitForURL((u) => u.pathname === '/account');
  await page.getByRole('heading', { level: 1 }).waitFor();
  await s.axe('account');
  await s.screenshot('account');
  // Not too close to the end of a 30 s step: the code typed below is for this one.
  await s.poll('a fresh TOTP step', 10_000, () => Date.now() % 30_000 < 22_000, 200);
  await page.getByRole('button', { name: 'Set up two-factor authentication' }).click();
  const qr = page.getByRole('img', { name: 'QR code for your authenticator app' });
  await qr.waitFor();
  check((await qr.locator('svg path').count()) === 1, 'the QR code is the hub-drawn SVG');
  const box = await qr.boundingBox();
  check(box && box.width >= 120, `the QR code is big enough to scan (${box && box.width} px)`);
  const secret = (await page.locator('code.totp-secret').innerText()).trim();
  log(`enrolment: secret of ${secret.replace(/\s/g, '').length} base32 characters shown`);
  await s.axe('account, enrolling');
  await s.screenshot('totp-enrol');
  const enrolStep = stepNow();
  await page.getByLabel('Authentication code').fill(totp(secret, enrolStep));
  await page.getByRole('button', { name: 'Turn on' }).click();
  const codes = page.locator('ul.recovery-codes li');
  await codes.first().waitFor();
  const recovery = await codes.allInnerTexts();
  check(recovery.length === 10, `10 recovery codes, got ${recovery.length}`);
  await s.axe('account, recovery codes');
  await s.screenshot('recovery-codes');
  await page.getByRole('button', { name: 'I have saved them' }).click();
  check((await s.apiJson('/api/me')).totp === true, 'two-factor is on');

  // Sign out; signing in now asks for the code.
  await page.getByRole('button', { name: 'Sign out' }).click();
  const form = page.locator('form#signin');
  await form.waitFor();
  await form.locator('input[name=email]').fill(env.email);
  await form.locator('input[name=password]').fill(env.password);
  await form.locator('button[type=submit]').click();
  const code = page.getByLabel('Authentication code');
  await code.waitFor();
  check((await page.locator('nav').count()) === 0, 'not signed in without the code');
  await s.axe('sign-in, code step');
  await s.screenshot('signin-code');
  await code.fill('000000');
  await form.locator('button[type=submit]').click();
  await page.locator('[role=alert]').filter({ hasText: /wrong authentication code/i }).waitFor();
  log('a wrong code is refused');
  // The enrolment's step is used; the next one is accepted (one step of skew).
  await code.fill(totp(secret, enrolStep + 1));
  await form.locator('button[type=submit]').click();
  await page.locator('nav').waitFor();
  log('signed in with a code');

  // --- people and sharing ---
  const cams = (await s.apiJson('/api/cameras')).items;
  check(cams.length === 2, `two cameras, got ${cams.length}`);
  await s.goto('/people', { status: 200 });
  await page.getByRole('heading', { level: 1 }).waitFor();
  await page.getByRole('button', { name: 'Add a person' }).click();
  await page.getByLabel('Email', { exact: true }).fill(VIEWER);
  await page.getByLabel('Role').selectOption('viewer');
  await page.getByLabel('Initial password').fill(VIEWER_PASSWORD);
  await page.getByRole('button', { name: 'Add', exact: true }).click();
  const row = page.locator(`[data-testid=person-row][data-email="${VIEWER}"]`);
  await row.waitFor();
  await page.getByRole('button', { name: `Share cameras with ${VIEWER}` }).click();
  await page.getByRole('checkbox', { name: cams[0].name, exact: true }).check();
  await page.getByRole('button', { name: 'Save cameras' }).click();
  await page.getByText(`Cameras shared with ${VIEWER}: 1.`).waitFor();
  const viewerRow = (await s.apiJson('/api/users')).items.find((u) => u.email === VIEWER);
  check(JSON.stringify(viewerRow.cameras) === JSON.stringify([cams[0].id]), `shared ${JSON.stringify(viewerRow.cameras)}`);
  await s.axe('people');
  await s.screenshot('people');

  // The viewer, in a browser of their own, sees the shared camera and only it.
  const other = await s.browser.newContext({ ignoreHTTPSErrors: true, viewport: LAPTOP });
  const vpage = await other.newPage();
  s.attach(vpage);
  const signedIn = await other.request.fetch(`${env.url}/api/session`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    data: JSON.stringify({ email: VIEWER, password: VIEWER_PASSWORD }),
    failOnStatusCode: false,
  });
  check(signedIn.status() === 200, `viewer sign-in: ${signedIn.status()}`);
  await vpage.goto(`${env.url}/`);
  const grid = vpage.locator('[data-testid=grid]');
  await grid.locator(`[data-testid=tile][data-camera-id="${cams[0].id}"]`).waitFor();
  check((await grid.locator('[data-testid=tile]').count()) === 1, 'the viewer sees one tile');
  check((await vpage.getByText(cams[1].name, { exact: true }).count()) === 0, 'no trace of the unshared camera');
  const links = await vpage.locator('nav a').allInnerTexts();
  check(!links.some((l) => /People|Audit|Security|Cameras|Devices|Timeline/.test(l)), `a viewer's nav: ${links.join(', ')}`);
  await vpage.screenshot({ path: `${env.out}/viewer-grid-laptop.png`, fullPage: true });
  log(`viewer: one tile (${cams[0].name}); nav ${links.join(', ')}`);

  // --- what leaves (no cloud here) and insight ---
  await s.goto('/cloud', { status: 200 });
  await page.locator('[data-testid=nothing-leaves]').waitFor();
  await s.axe('what leaves, no cloud');
  await s.screenshot('nothing-leaves');
  await s.goto('/insight', { status: 200 });
  await page.locator('main h1').waitFor();
  await s.axe('insight');
  await s.screenshot('insight');

  // --- audit and security ---
  await s.goto('/audit', { status: 200 });
  await page.locator('[data-testid=audit-row]').first().waitFor();
  check((await page.locator('[data-testid=audit-row][data-action="totp.enabled"]').count()) >= 1, 'the audit shows totp.enabled');
  await page.getByLabel('Action').selectOption('user.added');
  await page.getByRole('button', { name: 'Filter' }).click();
  await s.poll('the filter applied', 10_000, async () => {
    const actions = await page.locator('[data-testid=audit-row]').evaluateAll((rows) => rows.map((r) => r.dataset.action));
    return actions.length > 0 && actions.every((a) => a.startsWith('user.added'));
  });
  await s.axe('audit');
  await s.screenshot('audit');

  await s.goto('/security', { status: 200 });
  await page.locator('[data-testid=finding], [data-testid=doctor-ok]').first().waitFor();
  const findings = await page.locator('[data-testid=finding]').count();
  const doctor = await s.apiJson('/api/doctor');
  check(findings === doctor.findings.length, `the page shows the ${doctor.findings.length} findings, has ${findings}`);
  await s.axe('security');
  await s.screenshot('security');

  await page.getByRole('button', { name: 'Sign out everywhere and rotate device credentials' }).click();
  const confirm = page.locator('[data-testid=signout-confirm]');
  await confirm.waitFor();
  await s.axe('security, confirming');
  await s.screenshot('signout-confirm');
  await confirm.getByRole('button', { name: 'Yes, sign out everywhere' }).click();
  const notice = page.locator('[data-testid=signin-notice]');
  await notice.waitFor({ timeout: 30_000 });
  const said = await notice.innerText();
  // The owner's, the viewer's and the one the test harness signed in with.
  check(/3 browser sessions ended/.test(said), `the notice counts the sessions: ${JSON.stringify(said)}`);
  log(`after the button: ${said}`);
  await s.screenshot('signed-out-everywhere');

  // The viewer's browser is signed out on its next request.
  await vpage.reload();
  await vpage.locator('form#signin').waitFor();
  const vme = await other.request.fetch(`${env.url}/api/me`, { failOnStatusCode: false });
  check(vme.status() === 401, `the viewer's old session: ${vme.status()}`);
  await other.close();

  // Back in, with a recovery code; the audit trail names the action.
  await form.locator('input[name=email]').fill(env.email);
  await form.locator('input[name=password]').fill(env.password);
  await form.locator('button[type=submit]').click();
  await code.waitFor();
  await page.getByRole('button', { name: 'Type a recovery code instead' }).click();
  await page.getByLabel('Authentication code').fill(recovery[0]);
  await form.locator('button[type=submit]').click();
  await page.locator('nav').waitFor();
  await s.goto('/audit', { status: 200 });
  const big = page.locator('[data-testid=audit-row][data-action="security.signed_out_everywhere"]');
  await big.first().waitFor();
  check((await big.first().innerText()).includes(env.email), 'the audit row names the owner');
  await s.screenshot('audit-after');
});
