// First run: a hub with no users greets a signed-out visitor with "not set up yet" and how
// to get the link; the setup link (SETUP_PATH: /setup#token=…) creates the owner (HUB_EMAIL,
// HUB_PASSWORD), who is then signed in and welcomed. The token never reaches the hub's
// request line (it is in the fragment).
import { scenario, env, log, check } from './lib.mjs';

await scenario('setup', async (s) => {
  const { page } = s;
  s.allowConsole(/status of 401/, 'signed out, the shell and /api/me answer 401');
  const requested = [];
  page.on('request', (r) => requested.push(r.url()));

  await s.goto('/', { status: 401 });
  const greet = page.locator('[data-testid=not-set-up]');
  await greet.waitFor();
  check(/homehub setup-link/.test(await greet.innerText()), 'it says how to get the link');
  check((await page.locator('form#signin').count()) === 0, 'no sign-in form on a hub without users');
  await s.axe('not set up');
  await s.screenshot('not-set-up');

  await s.goto(env.get('SETUP_PATH'));
  const form = page.locator('form#setup');
  await form.waitFor();
  check((await form.getByLabel('Setup token').count()) === 0, 'the token came from the link, not typed');
  await s.axe('setup');
  await s.screenshot('setup');
  await form.getByLabel('Email').fill(env.email);
  await form.getByLabel('Password', { exact: true }).fill(env.password);
  await form.getByLabel('Confirm password').fill(env.password);
  await form.getByRole('button', { name: 'Create the owner' }).click();
  await page.locator('[data-testid=welcome]').waitFor();
  const me = await s.apiJson('/api/me');
  check(me.role === 'owner' && me.email === env.email, `signed in as the owner: ${JSON.stringify(me)}`);
  check(!page.url().includes('token='), `the token is gone from the address bar: ${page.url()}`);
  const token = env.get('SETUP_PATH').split('#token=')[1];
  check(!requested.some((u) => u.includes(token)), 'the token never was in a request URL');
  await s.axe('welcome');
  await s.screenshot('welcome');
  log('the owner was created through the setup link');
});
