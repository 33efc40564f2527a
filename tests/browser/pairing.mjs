// Pair a camera through the devices page: the request of DEVICE_ID appears with the
// address it comes from (DEVICE_PEER) → a wrong code (WRONG_CODE) shows why it was refused
// and pairs nothing → the right one (SETUP_CODE) pairs → the device's config names
// OTHER_HOST, not its own address, so the page says its camera was not started and offers
// "Allow this address (OTHER_HOST)" → pressing it starts the camera, which streams.
import { scenario, env, log, check } from './lib.mjs';

const id = env.get('DEVICE_ID');
const code = env.get('SETUP_CODE');
const wrong = env.get('WRONG_CODE');
const peer = env.get('DEVICE_PEER');
const other = env.get('OTHER_HOST');

await scenario('pairing', async (s) => {
  const { page } = s;
  // The refused code is a 403 from POST /api/pairing/{id}, which the browser logs.
  s.allowConsole(/status of 403/, 'the wrong setup code is refused with 403');
  await s.open('/devices');
  const request = page.locator(`[data-testid=pairing-request][data-device-id="${id}"]`);
  await request.first().waitFor({ timeout: 30_000 });
  const text = await request.first().innerText();
  log(`request: ${JSON.stringify(text)}`);
  check(text.includes(`from ${peer}`), `the request names the address it comes from (${peer}): ${JSON.stringify(text)}`);
  check((await page.getByTestId('competing').count()) === 0, 'one request only: no competing warning');
  await s.axe('devices page with a pairing request');
  await s.screenshot('pairing-request');

  // A wrong code: the hub and the device both refuse it; the reason shows on the request.
  await request.first().locator('input[name=setup_code]').fill(wrong);
  await request.first().getByRole('button', { name: 'Pair' }).click();
  const refused = page.locator('[data-testid=pairing-request] [role=alert]').filter({ hasText: /\S/ });
  await refused.first().waitFor({ timeout: 35_000 });
  const why = await refused.first().innerText();
  log(`wrong code: alert ${JSON.stringify(why)}`);
  check(/wrong setup code/i.test(why), `the alert says the code was wrong: ${JSON.stringify(why)}`);
  check(!(await s.apiJson('/api/devices')).items.some((d) => d.id === id && d.paired), 'nothing paired by the wrong code');
  await s.screenshot('pairing-wrong-code');

  // The device asks again on its session; the right code pairs it.
  const again = page.locator(`[data-testid=pairing-request][data-device-id="${id}"]`);
  await again.first().waitFor({ timeout: 30_000 });
  await again.first().locator('input[name=setup_code]').fill(code);
  await again.first().getByRole('button', { name: 'Pair' }).click();
  const row = page.locator(`[data-testid=device-row][data-device-id="${id}"]`);
  await row.waitFor({ timeout: 40_000 });
  await s.poll('the request gone from the list', 10_000, async () => (await request.count()) === 0);

  // Its config names another host: refused, with the owner's way out.
  const fence = row.getByTestId('config-refused');
  await fence.waitFor({ timeout: 20_000 });
  const reason = await fence.innerText();
  log(`config refused: ${JSON.stringify(reason)}`);
  check(reason.includes(other), `the refusal names the host ${other}: ${JSON.stringify(reason)}`);
  check(!reason.includes('rtsp://'), `the refusal does not show the URL: ${JSON.stringify(reason)}`);
  const noCamera = (await s.apiJson('/api/cameras')).items;
  check(noCamera.length === 0, `no camera started for the refused config (${noCamera.length})`);
  const allow = row.getByRole('button', { name: `Allow this address (${other})` });
  await allow.waitFor();
  await s.axe('devices page with a refused config');
  await s.screenshot('pairing-config-refused');

  await allow.click();
  const cam = await s.poll('the paired camera streaming', 40_000, async () =>
    (await s.apiJson('/api/cameras')).items.find((c) => c.source === 'paired' && c.status === 'streaming'),
  );
  log(`camera ${cam.id} (${cam.name}) streams`);
  await s.poll('the refusal gone from the page', 10_000, async () => (await row.getByTestId('config-refused').count()) === 0);
  const allowed = await row.innerText();
  check(allowed.includes(other), `the row lists ${other} as allowed: ${JSON.stringify(allowed)}`);
  await s.axe('devices page with an allowed address');
  await s.screenshot('pairing-allowed');
});
