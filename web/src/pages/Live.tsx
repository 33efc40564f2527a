// The live grid: one tile per camera with its snapshot as poster (refreshed every few
// seconds) and, where the browser has MSE, the live sub stream on top of it.
import { useEffect, useRef, useState } from "preact/hooks";
import type { Camera } from "../api";
import { linkClick } from "../router";
import { useCameras } from "../store";
import { LivePlayer, canPlayLive } from "../widgets/player";
import { StatusBadge } from "../widgets/status";

const POSTER_EVERY_MS = 5000;

function snapshotUrl(c: Camera): string {
  return c.snapshot_url ?? `/api/cameras/${c.id}/snapshot.jpg`;
}

function liveUrl(c: Camera, stream: "main" | "sub"): string {
  return `${c.live_url ?? `/api/cameras/${c.id}/live`}?stream=${stream}`;
}

/** The snapshot, reloaded every few seconds; hidden until one loads. */
export function Poster({ camera, width, every = POSTER_EVERY_MS }: { camera: Camera; width?: number; every?: number }) {
  const [tick, setTick] = useState(0);
  const [ok, setOk] = useState(false);
  useEffect(() => {
    const t = setInterval(() => {
      if (!document.hidden) setTick((n) => n + 1);
    }, every);
    return () => clearInterval(t);
  }, [every]);
  const src = `${snapshotUrl(camera)}?${width ? `width=${width}&` : ""}t=${tick}`;
  return (
    <img
      class={ok ? "poster" : "poster hidden"}
      src={src}
      alt={`Latest picture from ${camera.name}`}
      onLoad={() => setOk(true)}
      onError={() => setOk(false)}
    />
  );
}

function TileVideo({ camera }: { camera: Camera }) {
  const ref = useRef<HTMLVideoElement>(null);
  const [playing, setPlaying] = useState(false);
  useEffect(() => {
    const v = ref.current;
    if (!v) return;
    const p = new LivePlayer(v, liveUrl(camera, "sub"), {
      // The poster shows while the video is (re)connecting; the video covers it once it plays.
      onStatus: (status) => setPlaying(status === null),
    });
    p.start();
    return () => p.stop();
  }, [camera.id]);
  return <video ref={ref} class={playing ? "tile-video" : "tile-video hidden"} muted playsInline aria-hidden="true" tabIndex={-1} />;
}

function Tile({ camera }: { camera: Camera }) {
  const href = `/camera/${camera.id}`;
  const live = canPlayLive() && camera.status === "streaming";
  return (
    <li class="tile" data-testid="tile" data-camera-id={camera.id}>
      <a href={href} onClick={linkClick} class="tile-link">
        <div class="frame">
          <span class="frame-empty" aria-hidden="true">Waiting for a picture…</span>
          <Poster camera={camera} width={640} />
          {live && <TileVideo camera={camera} />}
          {camera.status !== "streaming" && <span class="frame-note">{camera.reason ?? "No picture yet"}</span>}
        </div>
        <div class="tile-caption">
          <span class="sr-only">Open the live view of </span>
          <span class="tile-name">{camera.name}</span>
          {camera.motion && <span class="badge motion">Motion</span>}
          <StatusBadge status={camera.status} />
        </div>
      </a>
    </li>
  );
}

export function Live() {
  const { cameras, camerasError } = useCameras();
  return (
    <section class="page wide" aria-labelledby="live-title">
      <h1 id="live-title">Live</h1>
      {camerasError && (
        <p role="alert" class="error">
          Cannot load the cameras: {camerasError}
        </p>
      )}
      {cameras === undefined && !camerasError && <p role="status">Loading cameras…</p>}
      {cameras && cameras.length === 0 && (
        <p>
          No cameras yet.{" "}
          <a href="/cameras" onClick={linkClick}>
            Add one
          </a>{" "}
          or pair one under{" "}
          <a href="/devices" onClick={linkClick}>
            Devices
          </a>
          .
        </p>
      )}
      <ul class="grid" data-testid="grid">
        {cameras?.map((c) => <Tile key={c.id} camera={c} />)}
      </ul>
    </section>
  );
}
