// Zones: camera CAMERA_ID (camsim started at CAMSIM_T0_MS, wall ms) moves in SPAN_BEFORE and
// SPAN_AFTER (seconds since then, "a-b"). The first span makes an event (the detector works);
// then an owner draws an exclude zone over the whole picture in the edit form and saves it;
// the second span makes no event, and the camera was not restarted (`connects` unchanged).
import { scenario, env, log, check } from './lib.mjs';

const id = Number(process.env.CAMERA_ID || 1);
const t0 = Number(env.get('CAMSIM_T0_MS'));
const span = (v) => env.get(v).split('-').map((x) => t0 + Number(x) * 1000);
const [beforeStart] = span('SPAN_BEFORE');
const [afterStart, afterEnd] = span('SPAN_AFTER');
const postRoll = Number(process.env.POST_ROLL_SECONDS || 3) * 1000;

await scenario('zones', async (s) => {
  const { page } = s;
  await s.signInApi();
  const events = async () => (await s.apiJson(`/api/events?camera=${id}`)).items;
  const first = await s.poll('the event of the first motion span to end', 90_000, async () =>
    (await events()).find((e) => e.end && Date.parse(e.start) >= beforeStart - 5000),
  );
  log(`before the zone: event ${first.id} ${first.start} → ${first.end}`);
  const cam0 = (await s.apiJson('/api/cameras')).items.find((c) => c.id === id);
  check(typeof cam0.connects === 'number', `/api/cameras gives connects for camera ${id}: ${JSON.stringify(cam0)}`);

  await s.open('/cameras');
  const row = page.locator(`[data-testid=camera-row][data-camera-id="${id}"]`);
  await row.getByRole('button', { name: 'Edit' }).click();
  const form = page.locator('form#edit-camera');
  await form.waitFor();
  await form.locator('select[name=recording_mode]').waitFor();
  await form.locator('input[name=sensitivity]').waitFor();
  await form.getByRole('button', { name: 'Remove' }).waitFor();
  const editor = form.locator('[data-testid=zone-editor]');
  const img = editor.locator('img');
  await img.waitFor();
  await img.evaluate((i) => (i.complete && i.naturalWidth > 0) || new Promise((r, j) => {
    i.addEventListener('load', r, { once: true });
    i.addEventListener('error', () => j(new Error(`zone editor image ${i.src} did not load`)), { once: true });
  }));
  await form.getByRole('button', { name: 'New exclude zone' }).click();
  // The corners of the picture (2 px in), clicked where a person clicks: on the overlay
  // above the image; the points are normalised to the image.
  const box = await img.boundingBox();
  check(box && box.width > 50 && box.height > 50, `the snapshot has a size: ${JSON.stringify(box)}`);
  for (const [fx, fy] of [
    [0, 0],
    [1, 0],
    [1, 1],
    [0, 1],
  ]) {
    await page.mouse.click(box.x + 2 + fx * (box.width - 4), box.y + 2 + fy * (box.height - 4));
  }
  await form.getByRole('button', { name: 'Finish zone' }).click();
  await s.screenshot('zones-drawn');
  await s.axe('edit form with a zone');
  await form.getByRole('button', { name: 'Save zones' }).click();
  await form.locator('[data-testid=zones-status]').filter({ hasText: 'Saved' }).waitFor();
  const savedAt = Date.now();
  log(`zone saved ${((afterStart - savedAt) / 1000).toFixed(1)} s before the second span`);
  check(savedAt < afterStart - 2000, 'the zone was saved before the second motion span (raise SPAN_AFTER if this is slow)');

  const cfg = await s.apiJson(`/api/cameras/${id}/motion`);
  const zone = (cfg.zones || []).find((z) => z.kind === 'exclude');
  check(zone, `an exclude zone in /api/cameras/${id}/motion: ${JSON.stringify(cfg)}`);
  const xs = zone.points.map((p) => p[0]);
  const ys = zone.points.map((p) => p[1]);
  check(zone.points.length === 4, `the zone has the 4 clicked points: ${JSON.stringify(zone.points)}`);
  check(Math.min(...xs) < 0.02 && Math.max(...xs) > 0.98 && Math.min(...ys) < 0.02 && Math.max(...ys) > 0.98, `the zone covers the picture (normalised points ${JSON.stringify(zone.points)})`);

  // Through the second span and its post-roll: no new event, no motion, no restart.
  const known = new Set((await events()).map((e) => e.id));
  let sawStreaming = 0;
  await s.poll('the second motion span and its post-roll to pass', afterEnd + postRoll + 5000 - Date.now() + 10_000, async () => {
    const fresh = (await events()).filter((e) => !known.has(e.id));
    check(fresh.length === 0, `no event with the picture excluded, got ${JSON.stringify(fresh)}`);
    const c = (await s.apiJson('/api/cameras')).items.find((x) => x.id === id);
    check(!c.motion, 'no motion reported with the picture excluded');
    if (c.status === 'streaming') sawStreaming++;
    return Date.now() > afterEnd + postRoll + 5000;
  }, 1000);
  const cam1 = (await s.apiJson('/api/cameras')).items.find((c) => c.id === id);
  check(cam1.connects === cam0.connects, `saving zones did not restart the camera (connects ${cam0.connects} → ${cam1.connects})`);
  check(cam1.status === 'streaming' && sawStreaming > 0, `the camera streamed through the span (${cam1.status})`);
  log(`after the zone: no event through the second span; connects ${cam1.connects}`);
});
