// Add a camera through the page: "Add camera" → a URL nobody answers (WRONG_URL) → "Test
// connection" shows an alert and "Save" stays disabled (the API lists no new camera) → the
// camsim's URL (GOOD_URL) → the probe shows the codec and size (EXPECT_SIZE, e.g. 640x360) →
// "Save" → the row appears and the camera streams. EXPECT_TRANSPORT (tcp|udp), when set, is
// the transport the camera must end up on. Prints `added camera id=N` for tests/browser.rs.
import { scenario, env, log, check } from './lib.mjs';

const name = process.env.CAMERA_NAME || 'Garden';
const wrong = env.get('WRONG_URL');
const good = env.get('GOOD_URL');
const [w, h] = (process.env.EXPECT_SIZE || '640x360').split('x');
const transport = process.env.EXPECT_TRANSPORT || '';

await scenario(`addcamera${transport ? '-' + transport : ''}`, async (s) => {
  const { page } = s;
  // A failed probe is a 422 from POST /api/cameras/probe, which the browser logs.
  s.allowConsole(/status of 422/, 'the probe of the closed port fails with 422');
  await s.open('/cameras');
  const before = (await s.apiJson('/api/cameras')).items;
  await page.getByRole('button', { name: 'Add camera' }).click();
  const form = page.locator('form#add-camera');
  await form.waitFor();
  await form.locator('input[name=name]').fill(name);
  await form.locator('input[name=url]').fill(wrong);
  const save = form.getByRole('button', { name: 'Save', exact: true });
  check(await save.isDisabled(), '"Save" is disabled before any test');
  await form.getByRole('button', { name: 'Test connection' }).click();
  const alert = page.locator('[role=alert]').filter({ hasText: /\S/ });
  await alert.first().waitFor({ timeout: 25_000 });
  const why = await alert.first().innerText();
  log(`probe of ${wrong}: alert ${JSON.stringify(why)}`);
  check(await save.isDisabled(), '"Save" stays disabled after a failed test');
  check((await page.locator('[data-testid=probe-result]').filter({ hasText: /\S/ }).count()) === 0, 'no probe result for the closed port');
  const still = (await s.apiJson('/api/cameras')).items;
  check(still.length === before.length, `nothing added after the failed test (${before.length} → ${still.length})`);
  await s.screenshot(`add-camera-failed${transport ? '-' + transport : ''}`);

  await form.locator('input[name=url]').fill(good);
  await form.getByRole('button', { name: 'Test connection' }).click();
  const result = page.locator('[data-testid=probe-result]').filter({ hasText: /\S/ });
  await result.waitFor({ timeout: 25_000 });
  const text = await result.innerText();
  log(`probe of the camsim: ${JSON.stringify(text)}`);
  check(/H\.?264/i.test(text), `the probe result names the codec: ${JSON.stringify(text)}`);
  check(new RegExp(`${w}\\s*[x×]\\s*${h}`).test(text), `the probe result gives the size ${w}x${h}: ${JSON.stringify(text)}`);
  if (transport) check(text.toLowerCase().includes(transport), `the probe result says ${transport}: ${JSON.stringify(text)}`);
  await s.poll('"Save" enabled after a successful test', 5_000, () => save.isEnabled(), 100);
  await s.axe(`add-camera form${transport ? ' (' + transport + ')' : ''}`);
  await s.screenshot(`add-camera-probed${transport ? '-' + transport : ''}`);
  await save.click();

  const cam = await s.poll(`camera ${JSON.stringify(name)} in /api/cameras`, 20_000, async () =>
    (await s.apiJson('/api/cameras')).items.find((c) => c.name === name),
  );
  check(cam.source === 'added', `the new camera's source is "added", got ${cam.source}`);
  check(!JSON.stringify(cam).includes('@'), 'no credentials in the camera JSON');
  const row = page.locator(`[data-testid=camera-row][data-camera-id="${cam.id}"]`);
  await row.waitFor();
  const streaming = await s.poll(`camera ${cam.id} streaming`, 40_000, async () => {
    const c = (await s.apiJson('/api/cameras')).items.find((x) => x.id === cam.id);
    return c && c.status === 'streaming' ? c : null;
  });
  // The row's words for "streaming" are the app's (it says Live).
  await row.filter({ hasText: /streaming|Live/ }).waitFor({ timeout: 20_000 });
  log(`camera ${cam.id} streaming over ${streaming.transport}, decoder ${streaming.decoder}`);
  if (transport) {
    check(streaming.transport === transport, `the camera streams over ${transport}, got ${streaming.transport}`);
    await row.filter({ hasText: new RegExp(transport, 'i') }).waitFor({ timeout: 20_000 });
  }
  await s.screenshot(`cameras-added${transport ? '-' + transport : ''}`);
  console.log(`added camera id=${cam.id}`);
});
