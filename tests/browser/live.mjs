// Live: the single view /camera/<CAMERA_ID> plays the main stream over the WebSocket; its
// video's currentTime passes 2 s. Prints how long open → first decoded frame took (the page's
// document.body.dataset.firstFrameMs); it is reported, not asserted.
import { scenario, env, log, check, videoAdvances } from './lib.mjs';

const id = Number(process.env.CAMERA_ID || 1);

await scenario('live', async (s) => {
  const { page } = s;
  const frames = { text: [], binary: 0, bytes: 0 };
  page.on('websocket', (ws) => {
    log(`websocket ${new URL(ws.url()).pathname}${new URL(ws.url()).search}`);
    ws.on('framereceived', (f) => {
      if (typeof f.payload === 'string') frames.text.push(f.payload);
      else {
        frames.binary++;
        frames.bytes += f.payload.length;
      }
    });
  });
  await s.open(`/camera/${id}`);
  const video = 'video[data-testid=live-video]';
  await page.locator(video).waitFor();
  const t = await videoAdvances(page, video, 2, 40_000);
  log(`live video currentTime ${t.toFixed(2)} s`);
  await page.waitForFunction(() => document.body.dataset.firstFrameMs !== undefined, null, { timeout: 10_000 });
  const ms = await page.evaluate(() => document.body.dataset.firstFrameMs);
  check(Number.isFinite(Number(ms)) && Number(ms) >= 0, `firstFrameMs is a number of ms, got ${JSON.stringify(ms)}`);
  console.log(`first frame after open: ${Math.round(Number(ms))} ms`);

  // The wire as the contract says: a text init naming the mime, then binary segments.
  check(frames.text.length >= 1, 'the server sent a text init message');
  const init = JSON.parse(frames.text[0]);
  check(init.type === 'init', `the first text message is the init, got ${frames.text[0]}`);
  check(/^video\/mp4; codecs="avc1\.[0-9a-fA-F]{6}"$/.test(init.mime), `init mime ${JSON.stringify(init.mime)}`);
  const cam = (await s.apiJson('/api/cameras')).items.find((c) => c.id === id);
  check(cam, `camera ${id} in /api/cameras`);
  if (cam.width) check(init.width === cam.width && init.height === cam.height, `init size ${init.width}x${init.height} is the camera's ${cam.width}x${cam.height}`);
  check(frames.binary >= 2, `init segment and fragments arrived as binary messages (${frames.binary})`);
  log(`websocket: init ${init.mime} ${init.width}x${init.height}, ${frames.binary} binary messages, ${frames.bytes} bytes`);
  const decoded = await page.$eval(video, (v) => ({ w: v.videoWidth, h: v.videoHeight }));
  check(decoded.w > 0 && decoded.h > 0, `the video has decoded frames (${decoded.w}x${decoded.h})`);
  await s.screenshot('live');
});
