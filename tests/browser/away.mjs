// The away page, opened from the test S3 server as the owner would open it from the bucket:
// its bucket URL comes from its own address; given a read-only key and the identity file,
// it lists the clips from the encrypted index and plays one (decrypted in the page). A
// wrong identity is told plainly that it opens nothing.
import { generateIdentity } from '../../web/node_modules/age-encryption/dist/index.js';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { scenario, env, log, check } from './lib.mjs';

const need = (k) => {
  const v = process.env[k];
  if (!v) throw new Error(`${k} is not set`);
  return v;
};
const AWAY_URL = need('AWAY_URL');
const EXPECT = Number(need('EXPECT_CLIPS'));

await scenario('away', async (s) => {
  const { page } = s;
  const resp = await page.goto(AWAY_URL, { waitUntil: 'load' });
  check(resp && resp.status() === 200, `GET ${AWAY_URL}: ${resp && resp.status()}`);
  check((resp.headers()['content-type'] || '').startsWith('text/html'), `served as HTML: ${resp.headers()['content-type']}`);
  await page.getByRole('heading', { name: 'Your clips, from anywhere' }).waitFor();
  const folder = AWAY_URL.replace(/[?#].*$/, '').replace(/\/[^/]*$/, '');
  const prefilled = await page.getByLabel('Bucket URL').inputValue();
  check(prefilled === folder, `the bucket URL from the page's own address: ${prefilled} (wanted ${folder})`);
  await s.axe('away, empty');
  await s.screenshot('away-empty');

  await page.getByLabel('Region').fill(need('S3_REGION'));
  await page.getByLabel('Access key ID').fill(need('S3_ACCESS_KEY'));
  await page.getByLabel('Secret access key').fill(need('S3_SECRET_KEY'));
  await page.getByLabel('Key file').setInputFiles(need('IDENTITY_FILE'));
  await page.getByRole('button', { name: 'Open' }).click();
  const clips = page.locator('[data-testid=clip]');
  await s.poll(`${EXPECT} clip(s) listed`, 60_000, async () => {
    const err = page.locator('#error:not([hidden])');
    if (await err.count()) throw new Error(`the page says: ${await err.innerText()}`);
    return (await clips.count()) === EXPECT;
  });
  log(`listed: ${await page.locator('#summary').innerText()}`);
  await s.axe('away, listed');
  await s.screenshot('away-listed');

  await clips.first().getByRole('button', { name: /^Play / }).click();
  const video = page.locator('#video');
  await s.poll('the clip playing', 30_000, async () =>
    video.evaluate((v) => v.readyState >= 2 && v.currentTime > 0.5 && !v.error),
  );
  const t = await video.evaluate((v) => ({ t: v.currentTime, d: v.duration, w: v.videoWidth, h: v.videoHeight }));
  check(t.w > 0 && t.h > 0, `the video has pictures: ${JSON.stringify(t)}`);
  log(`playing: currentTime ${t.t.toFixed(2)} s of ${t.d.toFixed(2)} s, ${t.w}x${t.h}`);
  await video.evaluate((v) => v.pause());
  await s.axe('away, playing');
  await s.screenshot('away-playing');

  // Somebody else's key opens nothing, and says so.
  const wrong = join(env.out, 'wrong.key');
  writeFileSync(wrong, `# a key that opens nothing here\n${await generateIdentity()}\n`);
  await page.getByLabel('Key file').setInputFiles(wrong);
  await page.getByRole('button', { name: 'Open' }).click();
  const err = page.locator('#error:not([hidden])');
  await err.waitFor({ timeout: 60_000 });
  const text = await err.innerText();
  check(/opens none of the \d+ objects/.test(text), `a wrong key is told so: ${text}`);
  check((await clips.count()) === 0, 'nothing is listed for a wrong key');
  await s.axe('away, wrong key');
  await s.screenshot('away-wrong-key');
});
