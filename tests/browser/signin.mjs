// Sign-in: a wrong password shows the server's error in [role=alert]; the right one lands on
// the live grid with one tile per camera (CAMSIM_PORTS: two cameras, ids 1 and 2), and a
// click on a tile opens its single view.
import { scenario, env, log, check } from './lib.mjs';

await scenario('signin', async (s) => {
  const { page } = s;
  // The shell without a session is a 401 (the app then shows sign-in), and the wrong
  // password is a 401 from POST /api/session: the browser logs both as failed loads.
  s.allowConsole(/status of 401/, 'the signed-out shell and the wrong password answer 401');

  const resp = await s.goto('/', { status: 401 });
  log(`GET / without a session: ${resp.status()}`);
  const form = page.locator('form#signin');
  await form.waitFor();
  await s.axe('sign-in');
  await s.screenshot('signin');

  await form.locator('input[name=email]').fill(env.email);
  await form.locator('input[name=password]').fill('not the password');
  await form.locator('button[type=submit]').click();
  const alert = page.locator('[role=alert]').filter({ hasText: /\S/ });
  await alert.first().waitFor();
  const text = await alert.first().innerText();
  check(/wrong email or password/i.test(text), `the alert says the server's error, got ${JSON.stringify(text)}`);
  check((await page.locator('nav').count()) === 0, 'still signed out after a wrong password');
  log(`wrong password: alert ${JSON.stringify(text)}`);
  await s.screenshot('signin-error');
  await s.axe('sign-in with an error');

  await s.signIn();
  const grid = page.locator('[data-testid=grid]');
  await grid.waitFor();
  const cams = (await s.apiJson('/api/cameras')).items;
  check(cams.length === env.ports.length, `${env.ports.length} cameras in the API, got ${cams.length}`);
  for (const c of cams) {
    const tile = grid.locator(`[data-testid=tile][data-camera-id="${c.id}"]`);
    await tile.waitFor();
    const t = await tile.innerText();
    check(t.includes(c.name), `tile ${c.id} names the camera ${JSON.stringify(c.name)}, has ${JSON.stringify(t)}`);
    const media = tile.locator('img, video');
    await media.first().waitFor();
  }
  const tiles = await grid.locator('[data-testid=tile]').count();
  check(tiles === cams.length, `one tile per camera: ${tiles} tiles for ${cams.length} cameras`);
  log(`grid: ${tiles} tiles`);
  for (const name of ['Live', 'Timeline', 'Cameras', 'Devices', 'Storage']) {
    await page.locator('nav').getByRole('link', { name, exact: true }).waitFor();
  }
  await page.getByRole('button', { name: 'Sign out' }).waitFor();

  const first = cams[0].id;
  await grid.locator(`[data-testid=tile][data-camera-id="${first}"]`).click();
  await page.waitForURL((u) => u.pathname === `/camera/${first}`);
  await page.locator('video[data-testid=live-video]').waitFor();
  log(`tile click opened ${new URL(page.url()).pathname}`);
});
