// Every page of the app: grid, single view, timeline, cameras, devices, storage, then sign-in
// after "Sign out". Each is loaded as a document (the security headers checked on it), waited
// for by its contract selector, checked with axe (no serious or critical violation) and
// screenshot at phone and laptop sizes. Any console error fails. One camera (id 1).
import { scenario, log, check } from './lib.mjs';

const PAGES = [
  { name: 'grid', path: '/', ready: '[data-testid=grid] [data-testid=tile]' },
  { name: 'single', path: '/camera/1', ready: 'video[data-testid=live-video]' },
  { name: 'timeline', path: '/timeline?camera=1', ready: '[data-testid=timeline]' },
  { name: 'cameras', path: '/cameras', ready: '[data-testid=camera-row][data-camera-id="1"]' },
  { name: 'devices', path: '/devices', ready: 'main h1, main h2' },
  { name: 'storage', path: '/storage', ready: '[data-testid=storage]' },
];

await scenario('pages', async (s) => {
  const { page } = s;
  for (const p of PAGES) {
    await s.open(p.path);
    await page.locator(p.ready).first().waitFor();
    check((await page.locator('main').count()) === 1, `${p.name}: one main landmark`);
    const title = await page.title();
    check(title.trim().length > 0, `${p.name}: the document has a title`);
    log(`${p.name}: ${p.path} ready (title ${JSON.stringify(title)})`);
    await s.axe(p.name);
    await s.screenshot(p.name);
  }
  // The nav reaches every page without a reload (History API).
  await s.open('/');
  for (const [link, path] of [
    ['Timeline', '/timeline'],
    ['Cameras', '/cameras'],
    ['Devices', '/devices'],
    ['Storage', '/storage'],
    ['Live', '/'],
  ]) {
    await page.locator('nav').getByRole('link', { name: link, exact: true }).click();
    await page.waitForURL((u) => u.pathname === path);
  }
  log('nav links reach every page');
  // The storage page says the forecast sentence when the hub has a forecast.
  const storage = await s.api('GET', '/api/storage');
  if (storage.status === 200 && storage.json && storage.json.forecast_days != null) {
    await s.open('/storage');
    await page.locator('[data-testid=storage]').filter({ hasText: /At this rate, [\d.,]+ days? fit/ }).waitFor();
    log('storage: the forecast sentence is there');
  } else {
    log(`storage: no forecast from /api/storage (${storage.status}); the sentence is not checked`);
  }

  // Signed out, the API and a reload of the shell answer 401 by design.
  s.allowConsole(/status of 401/, 'signed out, the hub answers 401');
  await page.getByRole('button', { name: 'Sign out' }).click();
  await page.locator('form#signin').waitFor();
  const me = await s.api('GET', '/api/me');
  check(me.status === 401, `after "Sign out" /api/me is 401, got ${me.status}`);
  await s.goto('/', { status: 401 });
  await page.locator('form#signin').waitFor();
  await s.axe('sign-in');
  await s.screenshot('signin');
});
