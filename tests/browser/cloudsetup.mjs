// The cloud set up from the browser on a hub whose config has none: who can open the clips
// (a pasted recipient), then the store — tested before it is saved, then saved and in use
// at once — the upload queue, and the away page put in the bucket. With STORE_DOWN=1 (the
// settings already saved, the store refusing connections) only "Test the store", which
// must say it does not work.
import { scenario, env, log, check } from './lib.mjs';

const need = (k) => {
  const v = process.env[k];
  if (!v) throw new Error(`${k} is not set`);
  return v;
};

await scenario('cloudsetup', async (s) => {
  const { page } = s;
  await s.open('/cloud');
  await page.getByRole('heading', { name: 'What leaves this house' }).waitFor();

  if (process.env.STORE_DOWN === '1') {
    s.allowConsole(/status of 502/, 'the store test answers 502 while the store is down');
    await page.getByRole('heading', { name: 'The store' }).waitFor();
    await page.getByRole('button', { name: 'Test the store' }).click();
    const result = page.locator('[data-testid=store-test-result][role=alert]');
    await result.waitFor({ timeout: 60_000 });
    const text = await result.innerText();
    check(/The store does not work/.test(text), `the failure is said: ${text}`);
    log(`store down: ${text}`);
    await s.axe('store down');
    await s.screenshot('store-down');
    return;
  }

  await page.locator('[data-testid=nothing-leaves]').waitFor();
  await s.axe('cloud off');
  await s.screenshot('cloud-off');

  // 1. Who can open the clips.
  await page.getByLabel('Recipient (age1…)').fill(need('RECIPIENT'));
  await page.getByRole('button', { name: 'Add', exact: true }).click();
  await s.poll('the recipient on the hub', 10_000, async () => (await s.apiJson('/api/cloud/recipients')).recipients.includes(need('RECIPIENT')));

  // 2. The store: tested, then saved.
  const form = page.getByRole('form', { name: "The store's settings" });
  await form.getByLabel('Store', { exact: true }).fill(`s3://${need('S3_BUCKET')}/home`);
  await form.getByLabel('Endpoint', { exact: true }).fill(need('S3_ENDPOINT'));
  await form.getByLabel('Region', { exact: true }).fill('us-east-1');
  await form.getByLabel('Access key ID', { exact: true }).fill(need('S3_ACCESS_KEY'));
  await form.getByLabel('Secret access key', { exact: true }).fill(need('S3_SECRET_KEY'));
  await form.getByRole('button', { name: 'Test these settings' }).click();
  const ok = form.locator('[data-testid=store-form-result][role=status]');
  await ok.waitFor({ timeout: 30_000 });
  check(/The store works/.test(await ok.innerText()), `the test passed: ${await ok.innerText()}`);
  check(!(await s.apiJson('/api/cloud/settings')).active, 'a test saves nothing');
  await s.axe('store tested');
  await s.screenshot('store-tested');
  await form.getByRole('button', { name: 'Save and start' }).click();

  // On at once: the page shows what the provider sees, the store and the queue.
  await page.getByRole('heading', { name: 'What the storage provider can see' }).waitFor({ timeout: 30_000 });
  await page.getByRole('heading', { name: 'The store' }).waitFor();
  await page.locator('[data-testid=queue]').waitFor({ timeout: 10_000 });
  const settings = await s.apiJson('/api/cloud/settings');
  check(settings.active && settings.from === 'hub' && settings.secret_set, `saved and in use: ${JSON.stringify(settings)}`);
  check(!(await page.content()).includes(need('S3_SECRET_KEY')), 'the page shows the secret');
  console.log('saved=1');

  // 3. The away page, into the bucket.
  await page.getByRole('button', { name: 'Put the away page in the bucket' }).click();
  const link = page.locator('[data-testid=away-url]');
  await link.waitFor({ timeout: 30_000 });
  const url = await link.getAttribute('href');
  check(url && url.includes('homehub-away.html'), `a link to the away page: ${url}`);
  console.log(`away url=${url}`);
  await s.axe('cloud on');
  await s.screenshot('cloud-on');
});
