// Timeline: camera CAMERA_ID records continuously in short segments and moves once (camsim
// --motion). The event shows on the timeline with a colour thumbnail; a click plays it; a
// range download across a segment boundary is an MP4 that ffprobe reads, as long as asked
// within one GOP (GOP_SECONDS). TZ=UTC, so datetime-local values are UTC.
import { spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { scenario, env, log, check, imageChroma, videoAdvances } from './lib.mjs';

const id = Number(process.env.CAMERA_ID || 1);
const gop = Number(process.env.GOP_SECONDS || 2);
const ms = (s) => Date.parse(s);
const local = (t) => new Date(t).toISOString().slice(0, 19);

function run(cmd, args) {
  const r = spawnSync(cmd, args, { encoding: 'utf8', timeout: 60_000 });
  check(r.status === 0, `${cmd} ${args.join(' ')}: exit ${r.status} ${r.stderr}`);
  return r.stdout;
}

/** Seconds from the first packet's start to the last packet's end, as ffprobe reads them. */
function probedSeconds(file) {
  const out = run('ffprobe', ['-v', 'error', '-select_streams', 'v:0', '-show_entries', 'packet=pts_time,duration_time', '-of', 'csv=p=0', file]);
  const rows = out
    .trim()
    .split('\n')
    .map((l) => l.split(',').map(Number))
    .filter((r) => Number.isFinite(r[0]));
  check(rows.length > 0, `ffprobe found video packets in ${file}`);
  const first = Math.min(...rows.map((r) => r[0]));
  const last = Math.max(...rows.map((r) => r[0] + (Number.isFinite(r[1]) ? r[1] : 0)));
  return { seconds: last - first, packets: rows.length };
}

await scenario('timeline', async (s) => {
  const { page } = s;
  await s.signInApi();
  const ev = await s.poll('an ended event with a clip and a thumbnail', 120_000, async () => {
    const items = (await s.apiJson(`/api/events?camera=${id}`)).items;
    return items.find((e) => e.end && e.clip_url && e.thumbnail_url);
  });
  log(`event ${ev.id}: ${ev.start} → ${ev.end}`);
  const pair = await s.poll('two adjacent finished segments', 60_000, async () => {
    const segs = (await s.apiJson(`/api/recordings?camera=${id}`)).items.filter((r) => !r.partial);
    // The pair with the smallest gap between them (a gap is footage nobody recorded).
    let best = null;
    // Not the run's first file: it is named when it opens, up to a GOP before its first
    // keyframe, so its times are that much less exact (see ARCHITECTURE, export).
    for (let i = 1; i + 1 < segs.length; i++) {
      const gap = ms(segs[i + 1].start) - ms(segs[i].end);
      if (gap < 2000 && (!best || gap < best.gap)) best = { gap, pair: [segs[i], segs[i + 1]] };
    }
    return best && segs.length >= 3 ? best.pair : null;
  });
  log(`segments ${pair[0].start} → ${pair[0].end}, ${pair[1].start} → ${pair[1].end}`);

  const day = ev.start.slice(0, 10);
  await s.open(`/timeline?camera=${id}&day=${day}`);
  await page.locator('[data-testid=timeline]').waitFor();
  const item = page.locator(`[data-testid=event][data-event-id="${ev.id}"]`);
  await item.waitFor();
  const img = item.locator('img');
  await img.waitFor();
  const chroma = await imageChroma(img);
  log(`thumbnail ${chroma.width}x${chroma.height}: chroma max ${chroma.max}, mean ${chroma.mean.toFixed(2)}`);
  check(chroma.max > 24, `the thumbnail is in colour (max |r-g|,|g-b| = ${chroma.max})`);
  await s.axe('timeline with an event');
  await s.screenshot('timeline');

  await page.getByRole('button', { name: 'Previous event' }).waitFor();
  await page.getByRole('button', { name: 'Next event' }).waitFor();
  await item.click();
  const playback = 'video[data-testid=playback]';
  await page.locator(playback).waitFor();
  const t = await videoAdvances(page, playback, 1, 30_000);
  log(`the event plays: currentTime ${t.toFixed(2)} s (src ${await page.$eval(playback, (v) => v.currentSrc)})`);
  await s.screenshot('timeline-playing');

  // The range: from 1 s into the first segment to 1 s before the second one ends.
  const start = Math.ceil(ms(pair[0].start) / 1000) * 1000 + 1000;
  const end = Math.floor(ms(pair[1].end) / 1000) * 1000 - 1000;
  check(end > ms(pair[0].end), 'the range ends inside the second segment');
  await page.locator('[data-testid=range-start]').fill(local(start));
  await page.locator('[data-testid=range-end]').fill(local(end));
  const link = page.locator('a[data-testid=download-range]');
  await page.waitForFunction(
    ([sel, a, b]) => {
      const h = document.querySelector(sel)?.getAttribute('href') || '';
      const u = new URL(h, location.href);
      return Date.parse(u.searchParams.get('start')) === a && Date.parse(u.searchParams.get('end')) === b;
    },
    ['a[data-testid=download-range]', start, end],
    { timeout: 10_000 },
  );
  const href = new URL(await link.getAttribute('href'), env.url);
  check(href.pathname === `/api/cameras/${id}/export`, `the download link is the export route, got ${href.pathname}`);
  check(href.searchParams.get('download') === '1', `the download link asks for an attachment: ${href}`);
  log(`download link ${href.pathname}${href.search}`);

  const r = await s.context.request.get(href.toString(), { timeout: 60_000, failOnStatusCode: false });
  check(r.status() === 200, `GET ${href.pathname}${href.search}: ${r.status()} ${(await r.text()).slice(0, 200)}`);
  const h = r.headers();
  check((h['content-type'] || '').startsWith('video/mp4'), `export content-type ${h['content-type']}`);
  check(/^attachment;\s*filename="[^"/\\]+\.mp4"$/.test(h['content-disposition'] || ''), `export content-disposition ${h['content-disposition']}`);
  const file = join(env.out, 'range.mp4');
  const body = await r.body();
  writeFileSync(file, body);
  const probed = probedSeconds(file);
  const asked = (end - start) / 1000;
  log(`range.mp4: ${body.length} bytes, ${probed.packets} packets, ${probed.seconds.toFixed(2)} s for ${asked} s asked`);
  check(Math.abs(probed.seconds - asked) <= gop, `the export lasts ${probed.seconds.toFixed(2)} s for ${asked} s asked (GOP ${gop} s)`);
  run('ffmpeg', ['-v', 'error', '-xerror', '-i', file, '-f', 'null', '-']);
  log('ffmpeg decodes range.mp4 without an error');
});
