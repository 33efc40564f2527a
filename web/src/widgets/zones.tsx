// The zone editor: polygons drawn on the camera's snapshot. Points are normalised to
// the picture (0..1, (0,0) top-left), as the hub's motion settings want them.
import { useRef, useState } from "preact/hooks";
import type { Zone } from "../api";

const MAX_POINTS = 256;
const MAX_ZONES = 64;

interface Props {
  snapshot: string;
  cameraName: string;
  zones: Zone[];
  onChange: (zones: Zone[]) => void;
}

function unusedName(zones: Zone[], kind: Zone["kind"]): string {
  const base = kind === "exclude" ? "Ignore" : "Watch";
  for (let i = 1; ; i++) {
    const n = `${base} ${i}`;
    if (!zones.some((z) => z.name === n)) return n;
  }
}

const poly = (pts: [number, number][]) => pts.map(([x, y]) => `${x},${y}`).join(" ");

export function ZoneEditor({ snapshot, cameraName, zones, onChange }: Props) {
  const [draft, setDraft] = useState<Zone | null>(null);
  const [imgOk, setImgOk] = useState(true);
  const svg = useRef<SVGSVGElement>(null);

  function start(kind: Zone["kind"]) {
    setDraft({ name: unusedName(zones, kind), kind, points: [] });
  }

  function click(e: MouseEvent) {
    if (!draft || !svg.current || draft.points.length >= MAX_POINTS) return;
    const r = svg.current.getBoundingClientRect();
    const x = Math.min(1, Math.max(0, (e.clientX - r.left) / r.width));
    const y = Math.min(1, Math.max(0, (e.clientY - r.top) / r.height));
    const round = (v: number) => Math.round(v * 10000) / 10000;
    setDraft({ ...draft, points: [...draft.points, [round(x), round(y)]] });
  }

  function finish() {
    if (!draft || draft.points.length < 3) return;
    onChange([...zones, draft]);
    setDraft(null);
  }

  return (
    <div class="zones">
      <div class="zone-editor" data-testid="zone-editor">
        <img src={snapshot} class={imgOk ? "" : "hidden"} alt={`Snapshot of ${cameraName} to draw zones on`} onError={() => setImgOk(false)} onLoad={() => setImgOk(true)} />
        <svg ref={svg} viewBox="0 0 1 1" preserveAspectRatio="none" class={draft ? "drawing" : ""} onClick={click} role="img" aria-label={`${zones.length} zones${draft ? `; drawing ${draft.name}, ${draft.points.length} points` : ""}`}>
          {zones.map((z) => (
            <polygon key={z.name} points={poly(z.points)} class={`zone ${z.kind}`} />
          ))}
          {draft && draft.points.length > 0 && (
            <>
              <polygon points={poly(draft.points)} class={`zone draft ${draft.kind}`} />
              {draft.points.map(([x, y], i) => (
                <circle key={i} cx={x} cy={y} r="0.008" class="zone-point" />
              ))}
            </>
          )}
        </svg>
      </div>
      {!imgOk && <p class="small">No snapshot yet: you can still draw, on a blank frame.</p>}
      <div class="zone-buttons">
        {draft ? (
          <>
            <span aria-live="polite" class="small">
              {draft.kind === "exclude" ? "Ignored" : "Watched"} zone “{draft.name}”: {draft.points.length} point{draft.points.length === 1 ? "" : "s"}
              {draft.points.length < 3 ? " — click the picture to add corners (3 or more)" : ""}
            </span>
            <button type="button" onClick={finish} disabled={draft.points.length < 3}>
              Finish zone
            </button>
            <button type="button" onClick={() => setDraft({ ...draft, points: draft.points.slice(0, -1) })} disabled={draft.points.length === 0}>
              Undo point
            </button>
            <button type="button" onClick={() => setDraft(null)}>
              Cancel zone
            </button>
          </>
        ) : (
          <>
            <button type="button" onClick={() => start("exclude")} disabled={zones.length >= MAX_ZONES}>
              New exclude zone
            </button>
            <button type="button" onClick={() => start("include")} disabled={zones.length >= MAX_ZONES}>
              New include zone
            </button>
          </>
        )}
      </div>
      {zones.length > 0 && (
        <ul class="zone-list">
          {zones.map((z) => (
            <li key={z.name}>
              <span class={`swatch ${z.kind}`} aria-hidden="true" />
              {z.name} ({z.kind === "exclude" ? "ignored" : "watched"}, {z.points.length} points)
              <button type="button" class="link" onClick={() => onChange(zones.filter((o) => o !== z))} aria-label={`Delete zone ${z.name}`}>
                Delete
              </button>
            </li>
          ))}
        </ul>
      )}
    </div>
  );
}
