// One camera full size: the main stream through the live player, with the time from
// opening the view to the first decoded frame (also in document.body.dataset.firstFrameMs).
import { useEffect, useRef, useState } from "preact/hooks";
import { fps, kbps } from "../format";
import { linkClick } from "../router";
import { useCameras } from "../store";
import { LivePlayer, canPlayLive } from "../widgets/player";
import { StatusBadge } from "../widgets/status";
import { Poster } from "./Live";

export function CameraView({ id }: { id: number }) {
  const { cameras, camerasError } = useCameras();
  const camera = cameras?.find((c) => c.id === id);
  const ref = useRef<HTMLVideoElement>(null);
  const [status, setStatus] = useState<string | null>("Connecting…");
  const [firstFrameMs, setFirstFrameMs] = useState<number | null>(null);
  const known = camera !== undefined;

  useEffect(() => {
    const v = ref.current;
    if (!v || !known) return;
    delete document.body.dataset.firstFrameMs;
    if (!canPlayLive()) {
      setStatus("This browser cannot play live video here; the picture below refreshes every few seconds.");
      return;
    }
    const url = `${camera?.live_url ?? `/api/cameras/${id}/live`}?stream=main`;
    const p = new LivePlayer(v, url, {
      onStatus: setStatus,
      onFirstFrame: (ms) => {
        document.body.dataset.firstFrameMs = String(ms);
        setFirstFrameMs(ms);
      },
    });
    p.start();
    return () => {
      p.stop();
      delete document.body.dataset.firstFrameMs;
    };
  }, [id, known]);

  if (!camera) {
    return (
      <section class="page">
        <p>
          <a href="/" onClick={linkClick}>
            ← All cameras
          </a>
        </p>
        {camerasError ? (
          <p role="alert" class="error">
            Cannot load the cameras: {camerasError}
          </p>
        ) : cameras ? (
          <p role="alert">There is no camera {id}.</p>
        ) : (
          <p role="status">Loading…</p>
        )}
      </section>
    );
  }

  return (
    <section class="page wide" aria-labelledby="cam-title">
      <p class="crumbs">
        <a href="/" onClick={linkClick}>
          ← All cameras
        </a>
      </p>
      <div class="title-row">
        <h1 id="cam-title">{camera.name}</h1>
        <StatusBadge status={camera.status} />
        {camera.motion && <span class="badge motion">Motion</span>}
      </div>
      <div class="frame single">
        {!canPlayLive() && <Poster camera={camera} every={2000} />}
        <video ref={ref} data-testid="live-video" class="live-video" muted playsInline autoplay aria-label={`Live video from ${camera.name}`} />
        {status && (
          <p class="frame-note" role="status" aria-live="polite">
            {status}
          </p>
        )}
      </div>
      <p class="meta">
        <span>
          {camera.width && camera.height ? `${camera.width}×${camera.height}` : "size unknown"} · {fps(camera.fps)} ·{" "}
          {kbps(camera.bitrate_kbps)}
        </span>
        {firstFrameMs !== null && <span class="small">First frame after {firstFrameMs} ms</span>}
        <a href={`/timeline?camera=${camera.id}`} onClick={linkClick}>
          Recordings and events
        </a>
      </p>
    </section>
  );
}
