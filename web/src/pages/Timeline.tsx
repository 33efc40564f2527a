// The timeline of one day: recorded spans and events per camera on a zoomable axis,
// the events with thumbnails, playback from any point (the hub's export, one continuous
// timeline across segments) or of an event's clip, and a range download.
import { useEffect, useMemo, useRef, useState } from "preact/hooks";
import { ApiError, type Camera, type HubEvent, type Page, type Span, errorText, get, qs } from "../api";
import { dayKey, duration, iso, localInput, parseDay, time } from "../format";
import { navigate } from "../router";
import { useCameras } from "../store";
import { Axis, type View, zoom } from "../widgets/axis";

const EVENT_LIMIT = 1000;
const PLAY_AHEAD_MS = 60 * 60_000;
const MAX_RANGE_MS = 24 * 3600_000;

interface Playing {
  cameraId: number;
  src: string;
  startMs: number;
  what: string;
  eventId: number | null;
}

function exportUrl(cameraId: number, start: number, end: number, download = false): string {
  return `/api/cameras/${cameraId}/export${qs({ start: iso(start), end: iso(end), download: download ? 1 : undefined })}`;
}

export function Timeline() {
  const { cameras } = useCameras(10_000);
  const q = new URLSearchParams(window.location.search);
  const cameraParam = q.get("camera");
  const selectedCamera = cameraParam ? Number(cameraParam) : null;
  const day0 = parseDay(q.get("day")) ?? parseDay(dayKey(new Date()))!;
  const dayStart = day0.getTime();
  const dayEnd = new Date(day0.getFullYear(), day0.getMonth(), day0.getDate() + 1).getTime();
  const day: View = { start: dayStart, end: dayEnd };

  const [view, setView] = useState<View>(day);
  const [spans, setSpans] = useState<Span[]>([]);
  const [events, setEvents] = useState<HubEvent[]>([]);
  const [error, setError] = useState<string | null>(null);
  const [loading, setLoading] = useState(true);
  const [truncated, setTruncated] = useState(false);
  const [playing, setPlaying] = useState<Playing | null>(null);
  const [playhead, setPlayhead] = useState<{ cameraId: number; at: number } | null>(null);
  const [playError, setPlayError] = useState<string | null>(null);
  const video = useRef<HTMLVideoElement>(null);

  useEffect(() => setView({ start: dayStart, end: dayEnd }), [dayStart]);

  useEffect(() => {
    let gone = false;
    const range = { camera: selectedCamera ?? undefined, since: iso(dayStart), until: iso(dayEnd) };
    setLoading(true);
    Promise.allSettled([
      get<Page<Span>>(`/api/recordings/spans${qs(range)}`),
      get<Page<HubEvent>>(`/api/events${qs({ ...range, limit: EVENT_LIMIT })}`).catch((e) =>
        // A hub without paging refuses `limit`: ask again without it.
        e instanceof ApiError && e.status === 400 && e.message.includes("limit") ? get<Page<HubEvent>>(`/api/events${qs(range)}`) : Promise.reject(e),
      ),
    ]).then(([s, e]) => {
      if (gone) return;
      const problems: string[] = [];
      if (s.status === "fulfilled") setSpans(s.value.items);
      else problems.push(`recorded spans: ${errorText(s.reason)}`);
      if (e.status === "fulfilled") {
        setEvents(e.value.items);
        setTruncated(Boolean(e.value.next));
      } else problems.push(`events: ${errorText(e.reason)}`);
      setError(problems.length ? `Cannot load ${problems.join("; ")}` : null);
      setLoading(false);
    });
    return () => {
      gone = true;
    };
  }, [selectedCamera, dayStart]);

  const shown: Camera[] = (cameras ?? []).filter((c) => selectedCamera === null || c.id === selectedCamera);
  const names = new Map((cameras ?? []).map((c) => [c.id, c.name]));
  // Newest first, as the list reads; previous/next walk through time.
  const sorted = useMemo(() => [...events].sort((a, b) => Date.parse(b.start) - Date.parse(a.start)), [events]);

  function setParams(camera: number | null, d: string) {
    navigate(`/timeline${qs({ camera: camera ?? undefined, day: d })}`, true);
  }

  function playAt(cameraId: number, at: number) {
    const end = Math.min(at + PLAY_AHEAD_MS, Math.max(Date.now(), at + 60_000));
    setPlayError(null);
    setPlaying({ cameraId, src: exportUrl(cameraId, at, end), startMs: at, what: `${names.get(cameraId) ?? "Camera"} from ${time(iso(at))}`, eventId: null });
    setPlayhead({ cameraId, at });
  }

  function playEvent(e: HubEvent) {
    const start = Date.parse(e.start);
    const end = e.end ? Date.parse(e.end) : start + 60_000;
    const src = e.clip_url ?? exportUrl(e.camera_id, start - 5000, end + 5000);
    setPlayError(null);
    setPlaying({ cameraId: e.camera_id, src, startMs: start - 5000, what: `Motion on ${names.get(e.camera_id) ?? "camera"} at ${time(e.start)}`, eventId: e.id });
    setPlayhead({ cameraId: e.camera_id, at: start });
    if (start < view.start || start > view.end) setView(zoom({ start: start - 15 * 60_000, end: start + 15 * 60_000 }, day, 1, start));
  }

  function step(dir: -1 | 1) {
    if (sorted.length === 0) return;
    const i = sorted.findIndex((e) => e.id === playing?.eventId);
    // The list is newest first: "next" (later in time) is one up, "previous" one down; both wrap.
    const j = i < 0 ? (dir < 0 ? 0 : sorted.length - 1) : (i - dir + sorted.length) % sorted.length;
    playEvent(sorted[j]);
  }

  useEffect(() => {
    const v = video.current;
    if (!v || !playing) return;
    v.src = playing.src;
    void v.play().catch(() => {});
  }, [playing?.src]);

  function timeUpdate() {
    const v = video.current;
    if (v && playing) setPlayhead({ cameraId: playing.cameraId, at: playing.startMs + v.currentTime * 1000 });
  }

  const dayLabel = day0.toLocaleDateString([], { weekday: "long", day: "numeric", month: "long" });
  const prevDay = dayKey(new Date(day0.getFullYear(), day0.getMonth(), day0.getDate() - 1));
  const nextDay = dayKey(new Date(day0.getFullYear(), day0.getMonth(), day0.getDate() + 1));
  const isToday = dayKey(day0) === dayKey(new Date());
  const defaultAround = useMemo(() => (isToday ? Math.floor(Date.now() / 60_000) * 60_000 - 10 * 60_000 : dayStart + 12 * 3600_000), [dayStart]);

  return (
    <section class="page wide" aria-labelledby="tl-title">
      <h1 id="tl-title">Timeline</h1>
      <div class="toolbar">
        <label>
          Camera
          <select value={selectedCamera ?? ""} onChange={(e) => setParams(e.currentTarget.value ? Number(e.currentTarget.value) : null, dayKey(day0))}>
            <option value="">All cameras</option>
            {(cameras ?? []).map((c) => (
              <option key={c.id} value={c.id}>
                {c.name}
              </option>
            ))}
          </select>
        </label>
        <div class="day-picker">
          <button type="button" onClick={() => setParams(selectedCamera, prevDay)} aria-label="Previous day">
            ‹
          </button>
          <label>
            <span class="sr-only">Day</span>
            <input type="date" value={dayKey(day0)} max={dayKey(new Date())} onChange={(e) => e.currentTarget.value && setParams(selectedCamera, e.currentTarget.value)} />
          </label>
          <button type="button" onClick={() => setParams(selectedCamera, nextDay)} disabled={isToday} aria-label="Next day">
            ›
          </button>
        </div>
      </div>

      <div data-testid="timeline" class="timeline card">
        <div class="timeline-head">
          <h2>{dayLabel}</h2>
          <div class="zoom-buttons">
            <button type="button" onClick={() => setView(zoom(view, day, 0.5, (view.start + view.end) / 2))}>
              Zoom in
            </button>
            <button type="button" onClick={() => setView(zoom(view, day, 2, (view.start + view.end) / 2))}>
              Zoom out
            </button>
          </div>
        </div>
        {error && (
          <p role="alert" class="error">
            {error}
          </p>
        )}
        {shown.length > 0 ? (
          <Axis cameras={shown} spans={spans} events={events} view={view} day={day} onView={setView} onPick={playAt} onEvent={playEvent} selectedEvent={playing?.eventId ?? null} playhead={playhead} />
        ) : (
          <p>{cameras ? "No cameras to show." : "Loading…"}</p>
        )}
        <p class="hint small">Drag to scroll, pinch or scroll the wheel to zoom, click a point to play from it. Shaded: recorded; marks: motion.</p>
      </div>

      <div class="playback card">
        <div class="playback-controls">
          <button type="button" onClick={() => step(-1)} disabled={sorted.length === 0}>
            Previous event
          </button>
          <p class="now-playing" aria-live="polite">
            {playing ? playing.what : "Pick an event or a point on the timeline."}
          </p>
          <button type="button" onClick={() => step(1)} disabled={sorted.length === 0}>
            Next event
          </button>
        </div>
        <video
          ref={video}
          data-testid="playback"
          class="playback-video"
          controls
          playsInline
          muted
          onTimeUpdate={timeUpdate}
          onError={() => playing && setPlayError("This footage cannot be played (nothing was recorded then, or the hub cannot export it yet).")}
          aria-label="Recorded video"
        />
        {playError && (
          <p role="alert" class="error">
            {playError}
          </p>
        )}
      </div>

      <RangeDownload cameras={cameras ?? []} cameraId={playing?.cameraId ?? selectedCamera ?? cameras?.[0]?.id ?? null} around={playing?.startMs ?? defaultAround} />

      <h2>
        Events {loading ? "" : `(${events.length}${truncated ? "+" : ""})`}
      </h2>
      {truncated && <p class="small">Showing the first {EVENT_LIMIT} events of the day.</p>}
      {!loading && sorted.length === 0 && <p>No motion on this day.</p>}
      <ul class="events">
        {sorted.map((e) => (
          <li key={e.id}>
            <button
              type="button"
              class={e.id === playing?.eventId ? "event current" : "event"}
              data-testid="event"
              data-event-id={e.id}
              aria-pressed={e.id === playing?.eventId}
              onClick={() => playEvent(e)}
            >
              {e.thumbnail_url ? <img src={e.thumbnail_url} alt="" loading="lazy" /> : <span class="no-thumb" />}
              <span class="event-text">
                <strong>{time(e.start)}</strong>
                <span>{names.get(e.camera_id) ?? `Camera ${e.camera_id}`}</span>
                <span class="small">{e.end ? duration(Date.parse(e.end) - Date.parse(e.start)) : "going on"}</span>
              </span>
            </button>
          </li>
        ))}
      </ul>
    </section>
  );
}

function RangeDownload({ cameras, cameraId, around }: { cameras: Camera[]; cameraId: number | null; around: number }) {
  const [cam, setCam] = useState<number | null>(cameraId);
  const [start, setStart] = useState(localInput(around));
  const [end, setEnd] = useState(localInput(around + 10 * 60_000));
  useEffect(() => setCam(cameraId), [cameraId]);
  useEffect(() => {
    setStart(localInput(around));
    setEnd(localInput(around + 10 * 60_000));
  }, [around]);
  const s = new Date(start).getTime();
  const e = new Date(end).getTime();
  const problem =
    cam === null ? "Pick a camera." : !Number.isFinite(s) || !Number.isFinite(e) ? "Enter a start and an end." : e <= s ? "The end must be after the start." : e - s > MAX_RANGE_MS ? "At most 24 hours at a time." : null;
  const href = problem || cam === null ? undefined : exportUrl(cam, s, e, true);
  return (
    <form class="card range" onSubmit={(ev) => ev.preventDefault()} aria-labelledby="range-title">
      <h2 id="range-title">Download a range</h2>
      <div class="range-fields">
        <label>
          Camera
          <select value={cam ?? ""} onChange={(ev) => setCam(ev.currentTarget.value ? Number(ev.currentTarget.value) : null)}>
            {cameras.map((c) => (
              <option key={c.id} value={c.id}>
                {c.name}
              </option>
            ))}
          </select>
        </label>
        <label>
          From
          <input type="datetime-local" step={1} data-testid="range-start" name="start" value={start} onInput={(ev) => setStart(ev.currentTarget.value)} />
        </label>
        <label>
          To
          <input type="datetime-local" step={1} data-testid="range-end" name="end" value={end} onInput={(ev) => setEnd(ev.currentTarget.value)} />
        </label>
        <a class={problem ? "button disabled" : "button primary"} data-testid="download-range" href={href} aria-disabled={problem ? "true" : undefined} download>
          Download MP4
        </a>
      </div>
      {problem && <p class="small" aria-live="polite">{problem}</p>}
    </form>
  );
}
