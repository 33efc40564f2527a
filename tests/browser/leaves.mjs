// "What leaves this house" with the cloud on (a test S3 server): the page shows where the
// bucket is, who can open the clips, and as many objects as the bucket really holds
// (EXPECT_OBJECTS, counted by the test from the S3 server itself), with the newest uploads as
// the provider lists them; then the insight page's charts. axe and screenshots on both.
import { scenario, env, log, check } from './lib.mjs';

await scenario('leaves', async (s) => {
  const { page } = s;
  await s.open('/cloud');
  const count = page.locator('[data-testid=object-count]');
  await count.waitFor();
  const shown = Number((await count.innerText()).replace(/[^\d]/g, ''));
  const want = Number(env.get('EXPECT_OBJECTS'));
  check(shown === want, `the page shows ${shown} objects, the bucket holds ${want}`);
  const rows = await page.locator('[data-testid=exposure-row]').count();
  check(rows === Math.min(want, 50), `${rows} upload rows for ${want} objects`);
  const text = await page.locator('main').innerText();
  check(text.includes(env.get('RECIPIENT')), 'the recipient is shown');
  check(text.includes(env.get('HUB_ID')), 'the hub id is shown');
  check(!text.includes('Cam 0'), 'no camera name on the provider side of the page');
  log(`what leaves: ${shown} objects, ${rows} rows`);
  await s.axe('what leaves');
  await s.screenshot('what-leaves');

  await page.locator('nav').getByRole('link', { name: 'Insight', exact: true }).click();
  await page.waitForURL((u) => u.pathname === '/insight');
  await page.locator('main [role=img]').first().waitFor();
  const charts = await page.locator('main svg[role=img], main [role=img] svg, main [role=img]').count();
  check(charts >= 3, `charts on the insight page: ${charts}`);
  await s.axe('insight');
  await s.screenshot('insight');
});
