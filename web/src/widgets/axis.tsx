// The day axis: one row per camera with its recorded spans and event marks. Drag to
// scroll, wheel or pinch to zoom (pointer events), click a point to play from it;
// arrow keys and +/- do the same from the keyboard.
import { useRef } from "preact/hooks";
import type { Camera, HubEvent, Span } from "../api";

export interface View {
  start: number;
  end: number;
}

const MIN_SPAN_MS = 60_000;
const STEPS_MIN = [1, 2, 5, 10, 15, 30, 60, 120, 180, 360];

export function clampView(v: View, day: View): View {
  let span = Math.max(MIN_SPAN_MS, Math.min(v.end - v.start, day.end - day.start));
  let start = Math.max(day.start, Math.min(v.start, day.end - span));
  if (!Number.isFinite(start)) start = day.start;
  if (!Number.isFinite(span)) span = day.end - day.start;
  return { start, end: start + span };
}

export function zoom(v: View, day: View, factor: number, at: number): View {
  const span = (v.end - v.start) * factor;
  const frac = (at - v.start) / (v.end - v.start);
  return clampView({ start: at - frac * span, end: at - frac * span + span }, day);
}

function ticks(v: View): number[] {
  const spanMin = (v.end - v.start) / 60_000;
  const step = (STEPS_MIN.find((s) => spanMin / s <= 6) ?? 360) * 60_000;
  const offset = new Date(v.start).getTimezoneOffset() * 60_000;
  const first = Math.ceil((v.start - offset) / step) * step + offset;
  const out: number[] = [];
  for (let t = first; t < v.end - step / 4; t += step) if (t > v.start + step / 4 || t === v.start) out.push(t);
  return out;
}

function label(t: number): string {
  return new Date(t).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
}

interface Props {
  cameras: Camera[];
  spans: Span[];
  events: HubEvent[];
  view: View;
  day: View;
  onView: (v: View) => void;
  onPick: (cameraId: number, at: number) => void;
  onEvent: (e: HubEvent) => void;
  selectedEvent: number | null;
  playhead: { cameraId: number; at: number } | null;
}

export function Axis(p: Props) {
  const el = useRef<HTMLDivElement>(null);
  const pointers = useRef(new Map<number, number>());
  const drag = useRef({ moved: 0, pinch: 0 });
  const { view } = p;
  const span = view.end - view.start;
  const pct = (t: number) => ((t - view.start) / span) * 100;
  const width = () => el.current?.getBoundingClientRect().width || 1;
  const timeAtX = (clientX: number) => {
    const r = el.current?.getBoundingClientRect();
    return r ? view.start + ((clientX - r.left) / r.width) * span : view.start;
  };

  function down(e: PointerEvent) {
    (e.currentTarget as HTMLElement).setPointerCapture(e.pointerId);
    pointers.current.set(e.pointerId, e.clientX);
    drag.current.moved = 0;
    if (pointers.current.size === 2) {
      const [a, b] = [...pointers.current.values()];
      drag.current.pinch = Math.abs(a - b);
    }
  }

  function move(e: PointerEvent) {
    const prev = pointers.current.get(e.pointerId);
    if (prev === undefined) return;
    pointers.current.set(e.pointerId, e.clientX);
    if (pointers.current.size === 1) {
      const dx = e.clientX - prev;
      drag.current.moved += Math.abs(dx);
      if (drag.current.moved > 4) p.onView(clampView({ start: view.start - (dx / width()) * span, end: view.end - (dx / width()) * span }, p.day));
    } else if (pointers.current.size === 2) {
      const [a, b] = [...pointers.current.values()];
      const dist = Math.abs(a - b);
      drag.current.moved += 10;
      if (drag.current.pinch > 10 && dist > 10) p.onView(zoom(view, p.day, drag.current.pinch / dist, timeAtX((a + b) / 2)));
      drag.current.pinch = dist;
    }
  }

  function up(e: PointerEvent) {
    const wasTap = pointers.current.size === 1 && drag.current.moved <= 4;
    pointers.current.delete(e.pointerId);
    if (!wasTap || e.type !== "pointerup") return;
    const hit = document.elementFromPoint(e.clientX, e.clientY);
    const mark = hit?.closest<HTMLElement>("[data-mark-event]");
    if (mark) {
      const ev = p.events.find((x) => x.id === Number(mark.dataset.markEvent));
      if (ev) return p.onEvent(ev);
    }
    const row = hit?.closest<HTMLElement>("[data-row-camera]");
    if (row) p.onPick(Number(row.dataset.rowCamera), timeAtX(e.clientX));
  }

  function wheel(e: WheelEvent) {
    e.preventDefault();
    if (Math.abs(e.deltaX) > Math.abs(e.deltaY)) {
      const dt = (e.deltaX / width()) * span;
      p.onView(clampView({ start: view.start + dt, end: view.end + dt }, p.day));
    } else {
      p.onView(zoom(view, p.day, Math.exp(e.deltaY * 0.002), timeAtX(e.clientX)));
    }
  }

  function key(e: KeyboardEvent) {
    const mid = (view.start + view.end) / 2;
    const dt = span / 8;
    const actions: Record<string, () => View> = {
      ArrowLeft: () => clampView({ start: view.start - dt, end: view.end - dt }, p.day),
      ArrowRight: () => clampView({ start: view.start + dt, end: view.end + dt }, p.day),
      "+": () => zoom(view, p.day, 0.5, mid),
      "=": () => zoom(view, p.day, 0.5, mid),
      "-": () => zoom(view, p.day, 2, mid),
    };
    const f = actions[e.key];
    if (f) {
      e.preventDefault();
      p.onView(f());
    } else if (e.key === "Enter" && p.cameras[0]) {
      p.onPick(p.cameras[0].id, mid);
    }
  }

  return (
    <div class="axis-wrap">
      <div class="axis-ticks" aria-hidden="true">
        {ticks(view).map((t) => (
          <span key={t} class="tick" style={{ left: `${pct(t)}%` }}>
            {label(t)}
          </span>
        ))}
      </div>
      <div
        ref={el}
        class="axis"
        tabIndex={0}
        role="group"
        aria-label="Recorded time of the day. Drag or use the arrow keys to scroll, wheel, pinch or plus and minus to zoom, click a point (or press Enter for the middle) to play from it."
        onPointerDown={down}
        onPointerMove={move}
        onPointerUp={up}
        onPointerCancel={up}
        onWheel={wheel}
        onKeyDown={key}
      >
        {p.cameras.map((c) => (
          <div key={c.id} class="axis-row" data-row-camera={c.id}>
            <span class="axis-name">{c.name}</span>
            {p.spans
              .filter((s) => s.camera_id === c.id)
              .map((s) => {
                const a = Math.max(Date.parse(s.start), view.start);
                const b = Math.min(Date.parse(s.end), view.end);
                if (b <= a) return null;
                return <span key={s.start} class="span" style={{ left: `${pct(a)}%`, width: `${Math.max(0.2, pct(b) - pct(a))}%` }} />;
              })}
            {p.events
              .filter((ev) => ev.camera_id === c.id)
              .map((ev) => {
                const t = Date.parse(ev.start);
                if (t < view.start || t > view.end) return null;
                return (
                  <span
                    key={ev.id}
                    class={ev.id === p.selectedEvent ? "mark selected" : "mark"}
                    data-mark-event={ev.id}
                    style={{ left: `${pct(t)}%` }}
                    title={`Motion at ${new Date(t).toLocaleTimeString()}`}
                  />
                );
              })}
            {p.playhead && p.playhead.cameraId === c.id && p.playhead.at >= view.start && p.playhead.at <= view.end && (
              <span class="playhead" style={{ left: `${pct(p.playhead.at)}%` }} />
            )}
          </div>
        ))}
      </div>
    </div>
  );
}
