// Storage: what the recordings take per camera, what is free, and how many days fit at
// the recent rate.
import { useEffect, useState } from "preact/hooks";
import { type Storage, errorText, get } from "../api";
import { bytes } from "../format";

function pct(part: number, whole: number): number {
  return whole > 0 ? Math.max(0, Math.min(100, (part / whole) * 100)) : 0;
}

export function StoragePage() {
  const [s, setS] = useState<Storage | null>(null);
  const [error, setError] = useState<string | null>(null);
  useEffect(() => {
    let gone = false;
    const load = () =>
      get<Storage>("/api/storage")
        .then((r) => !gone && (setS(r), setError(null)))
        .catch((e) => !gone && setError(errorText(e)));
    void load();
    const t = setInterval(() => !document.hidden && void load(), 15_000);
    return () => {
      gone = true;
      clearInterval(t);
    };
  }, []);

  const forecast =
    s === null
      ? null
      : s.forecast_days === null
        ? "Not enough recording yet to say how many days fit."
        : `At this rate, ${s.forecast_days >= 10 ? Math.round(s.forecast_days) : s.forecast_days.toFixed(1)} days fit (recordings are kept ${s.retain_days} days).`;

  return (
    <section class="page" aria-labelledby="st-title">
      <h1 id="st-title">Storage</h1>
      {error && (
        <p role="alert" class="error">
          Cannot load the storage figures: {error}
        </p>
      )}
      {!s && !error && <p role="status">Loading…</p>}
      <div data-testid="storage" class="card storage">
        {s && (
          <>
            <p class="forecast">{forecast}</p>
            <div class="bar" role="img" aria-label={`${bytes(s.used_bytes)} used by homehub, ${bytes(s.free_bytes)} free of ${bytes(s.total_bytes)}`}>
              <span class="bar-used" style={{ width: `${pct(s.used_bytes, s.total_bytes)}%` }} />
              <span class="bar-other" style={{ width: `${pct(s.total_bytes - s.used_bytes - s.free_bytes, s.total_bytes)}%` }} />
            </div>
            <p class="legend small">
              <span class="swatch used" aria-hidden="true" /> homehub {bytes(s.used_bytes)} <span class="swatch other" aria-hidden="true" /> other files{" "}
              {bytes(Math.max(0, s.total_bytes - s.used_bytes - s.free_bytes))} <span class="swatch free" aria-hidden="true" /> free {bytes(s.free_bytes)} of{" "}
              {bytes(s.total_bytes)}
            </p>
            <p class="small">Writing about {bytes(s.write_bytes_per_day)} a day.</p>
            <table class="storage-table">
              <caption class="sr-only">Storage by camera</caption>
              <thead>
                <tr>
                  <th scope="col">Camera</th>
                  <th scope="col">Recordings</th>
                  <th scope="col">Event clips</th>
                  <th scope="col">Total</th>
                </tr>
              </thead>
              <tbody>
                {s.cameras.map((c) => (
                  <tr key={c.camera_id}>
                    <th scope="row">{c.name}</th>
                    <td>{bytes(c.recordings_bytes)}</td>
                    <td>{bytes(c.clips_bytes)}</td>
                    <td>{bytes(c.bytes)}</td>
                  </tr>
                ))}
              </tbody>
            </table>
          </>
        )}
      </div>
    </section>
  );
}
