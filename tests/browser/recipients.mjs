// Who can open the clips, from the browser: a key made in the page (age-encryption from
// npm, in page JavaScript) is downloaded — the test keeps the file in OUT_DIR for Debian's
// age — and only its public part goes to the hub (every request the page makes is checked
// for the secret). Then "Test the store" against the running S3 server. With STORE_DOWN=1
// the scenario only tests the store and expects the failure.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { scenario, env, log, check } from './lib.mjs';

await scenario('recipients', async (s) => {
  const { page } = s;
  const bodies = [];
  page.on('request', (r) => bodies.push(`${r.url()} ${r.postData() || ''}`));
  await s.open('/cloud');
  await page.getByRole('heading', { name: 'Who can open the clips' }).waitFor();

  if (process.env.STORE_DOWN === '1') {
    s.allowConsole(/status of 502/, 'the store test answers 502 while the store is down');
    await page.getByRole('button', { name: 'Test the store' }).click();
    const result = page.locator('[data-testid=store-test-result][role=alert]');
    await result.waitFor({ timeout: 60_000 });
    log(`store down: ${await result.innerText()}`);
    await s.axe('store test failed');
    await s.screenshot('store-down');
    return;
  }

  await page.getByRole('button', { name: 'Create a key in this browser' }).click();
  const recipient = (await page.locator('[data-testid=new-recipient]').innerText()).trim();
  check(/^age1[0-9a-z]{58}$/.test(recipient), `a new recipient: ${JSON.stringify(recipient)}`);
  const [download] = await Promise.all([page.waitForEvent('download'), page.locator('[data-testid=download-key]').click()]);
  check(download.suggestedFilename() === 'homehub-cloud-key.txt', `the key file's name: ${download.suggestedFilename()}`);
  const keyFile = join(env.out, 'homehub-cloud-key.txt');
  await download.saveAs(keyFile);
  const text = readFileSync(keyFile, 'utf8');
  const secret = text.split('\n').find((l) => l.startsWith('AGE-SECRET-KEY-1'));
  check(secret && text.includes(`# public key: ${recipient}`), 'the file holds the secret and names its public key');
  await s.axe('a new key');
  await s.screenshot('new-key');
  await page.getByRole('button', { name: "Add this key's public part" }).click();
  await s.poll('the recipient on the hub', 10_000, async () => (await s.apiJson('/api/cloud/recipients')).recipients.includes(recipient));
  check((await page.locator('[data-testid=new-recipient]').count()) === 0, 'the page forgot the secret');

  await page.getByRole('button', { name: 'Test the store' }).click();
  const ok = page.locator('[data-testid=store-test-result][role=status]');
  await ok.waitFor({ timeout: 30_000 });
  check(/The store works/.test(await ok.innerText()), 'the store test passed');
  await s.axe('recipients');
  await s.screenshot('recipients');

  const leaked = bodies.filter((b) => b.includes(secret) || b.includes('AGE-SECRET-KEY'));
  check(leaked.length === 0, `the secret went to the hub: ${leaked.join(' | ')}`);
  log(`requests checked: ${bodies.length}; none held the secret`);
  console.log(`key file=${keyFile}`);
  console.log(`recipient=${recipient}`);
});
