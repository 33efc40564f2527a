// Small bar charts as inline SVG, drawn by Preact: presentation attributes and CSS classes
// only (the page's Content-Security-Policy allows no inline style). Each SVG is one image to
// assistive technology (role="img" with a summary for its name); the page puts the numbers
// in a table beside it. The viewBox is the chart's own width in CSS pixels, measured, so
// the text stays the page's size on a phone and on a laptop alike and only the bars stretch.
import { useLayoutEffect, useRef, useState } from "preact/hooks";
import type { JSX } from "preact";
import { utcDay } from "../format";

/** The width of the element, in whole CSS pixels, kept up to date as it changes. */
function useWidth<T extends HTMLElement>(fallback: number): [{ current: T | null }, number] {
  const ref = useRef<T>(null);
  const [w, setW] = useState(fallback);
  useLayoutEffect(() => {
    const el = ref.current;
    if (!el) return;
    const measure = () => {
      const px = Math.round(el.getBoundingClientRect().width);
      if (px > 0) setW((old) => (old === px ? old : px));
    };
    measure();
    if (typeof ResizeObserver === "undefined") {
      window.addEventListener("resize", measure);
      return () => window.removeEventListener("resize", measure);
    }
    // On the next frame, not inside the observer's callback: no resize loop.
    let frame = 0;
    const ro = new ResizeObserver(() => {
      cancelAnimationFrame(frame);
      frame = requestAnimationFrame(measure);
    });
    ro.observe(el);
    return () => {
      cancelAnimationFrame(frame);
      ro.disconnect();
    };
  }, []);
  return [ref, Math.max(200, w)];
}

/** Rough width of chart text (12 px system font), to leave room for it. */
const textWidth = (s: string) => s.length * 7 + 4;

/** Tick values from 0 to a round top at or above `max` (whole numbers: these are counts). */
function ticks(max: number): number[] {
  if (!(max > 0)) return [0, 1];
  const raw = max / 3;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = Math.max(1, [1, 2, 5, 10].map((m) => m * mag).find((s) => s >= raw) ?? 10 * mag);
  const top = Math.ceil(max / step) * step;
  const out: number[] = [];
  for (let v = 0; v <= top + step / 2; v += step) out.push(v);
  return out;
}

export interface DaySeries {
  /** What one unit is, for the tooltip: "motion events". */
  name: string;
  /** The bar's colour class (app.css `.chart-bar.<cls>`). */
  cls: string;
  values: number[];
}

/**
 * Bars per day (grouped when there are several series), oldest on the left, days as UTC
 * dates. `label` is the accessible summary.
 */
export function DayBars({ days, series, label, height = 170 }: { days: string[]; series: DaySeries[]; label: string; height?: number }) {
  const [ref, w] = useWidth<HTMLDivElement>(600);
  const n = days.length;
  const max = Math.max(0, ...series.flatMap((s) => days.map((_, i) => s.values[i] ?? 0)));
  const ys = ticks(max);
  const top = ys[ys.length - 1];
  const left = 8 + textWidth(String(top));
  const right = 8;
  const pad = 8;
  const bottom = 22;
  const pw = w - left - right;
  const ph = height - pad - bottom;
  const slot = pw / Math.max(1, n);
  const group = Math.max(1, slot * (slot > 6 ? 0.75 : 0.9));
  const bar = group / Math.max(1, series.length);
  const y = (v: number) => pad + ph - (v / top) * ph;
  // A date label every `every` days, the newest always among them, none overlapping the next.
  const every = Math.max(1, Math.ceil(52 / slot));
  const dayLabels: JSX.Element[] = [];
  let room = Infinity;
  for (let i = n - 1; i >= 0; i -= every) {
    const text = utcDay(days[i]);
    const tw = textWidth(text);
    const cx = left + i * slot + slot / 2;
    // The first and last labels stay inside the picture.
    const anchor = cx + tw / 2 > w - 2 ? "end" : cx - tw / 2 < 2 ? "start" : "middle";
    const x = anchor === "end" ? w - 2 : anchor === "start" ? 2 : cx;
    const x0 = anchor === "end" ? x - tw : anchor === "start" ? x : x - tw / 2;
    const x1 = x0 + tw;
    if (x1 > room - 6) continue;
    room = x0;
    dayLabels.push(
      <text key={days[i]} class="chart-text" x={x} y={height - 6} text-anchor={anchor}>
        {text}
      </text>,
    );
  }
  const bars: JSX.Element[] = [];
  days.forEach((d, i) => {
    series.forEach((s, j) => {
      const v = s.values[i] ?? 0;
      if (!(v > 0)) return;
      const h = Math.max(1.5, (v / top) * ph);
      bars.push(
        <rect key={`${i}-${j}`} class={`chart-bar ${s.cls}`} x={left + i * slot + (slot - group) / 2 + j * bar} y={pad + ph - h} width={Math.max(1, bar - (series.length > 1 && bar > 3 ? 1 : 0))} height={h}>
          <title>{`${utcDay(d)}: ${v.toLocaleString()} ${s.name}`}</title>
        </rect>,
      );
    });
  });
  return (
    <div class="chart" ref={ref}>
      <svg role="img" aria-label={label} viewBox={`0 0 ${w} ${height}`} width="100%" height={height} class="chart-svg">
        {ys.map((v) => (
          <g key={v}>
            <line class={v === 0 ? "chart-axis" : "chart-grid"} x1={left} x2={w - right} y1={y(v)} y2={y(v)} shape-rendering="crispEdges" />
            <text class="chart-text" x={left - 6} y={y(v)} dy="0.35em" text-anchor="end">
              {v.toLocaleString()}
            </text>
          </g>
        ))}
        {bars}
        {dayLabels}
      </svg>
    </div>
  );
}

export interface HBarValue {
  value: number;
  /** The bar's colour class (app.css `.chart-bar.<cls>`). */
  cls: string;
  /** The value as the chart writes it beside the bar ("1.2 GB", "12"). */
  text: string;
  /** What the value is, for the tooltip ("connections"). */
  name?: string;
}

export interface HBarRow {
  key: string;
  label: string;
  values: HBarValue[];
}

/** Horizontal bars, one group per row, its name above and each value at the bar's end. */
export function HBars({ rows, label }: { rows: HBarRow[]; label: string }) {
  const [ref, w] = useWidth<HTMLDivElement>(600);
  const barH = 14;
  const gap = 3;
  const labelH = 20;
  const rowGap = 10;
  const perRow = labelH + Math.max(1, ...rows.map((r) => r.values.length)) * (barH + gap) + rowGap;
  const height = rows.length * perRow;
  const max = Math.max(0, ...rows.flatMap((r) => r.values.map((v) => v.value)));
  const room = Math.max(...rows.flatMap((r) => r.values.map((v) => textWidth(v.text))), 30) + 8;
  const left = 2;
  const pw = Math.max(20, w - left - room);
  const maxChars = Math.max(8, Math.floor(w / 7.5));
  const cut = (s: string) => (s.length > maxChars ? `${s.slice(0, maxChars - 1)}…` : s);
  return (
    <div class="chart" ref={ref}>
      <svg role="img" aria-label={label} viewBox={`0 0 ${w} ${height}`} width="100%" height={height} class="chart-svg">
        {rows.map((r, i) => {
          const y0 = i * perRow;
          return (
            <g key={r.key}>
              <text class="chart-label" x={left} y={y0 + 14}>
                {cut(r.label)}
              </text>
              {r.values.map((v, j) => {
                const y = y0 + labelH + j * (barH + gap);
                const len = max > 0 && v.value > 0 ? Math.max(2, (v.value / max) * pw) : 0;
                return (
                  <g key={j}>
                    <rect class="chart-track" x={left} y={y} width={pw} height={barH} rx="2" />
                    {len > 0 && (
                      <rect class={`chart-bar ${v.cls}`} x={left} y={y} width={len} height={barH} rx="2">
                        <title>{`${r.label}: ${v.text}${v.name ? ` ${v.name}` : ""}`}</title>
                      </rect>
                    )}
                    <text class="chart-value" x={left + len + 6} y={y + barH / 2} dy="0.35em">
                      {v.text}
                    </text>
                  </g>
                );
              })}
            </g>
          );
        })}
      </svg>
    </div>
  );
}
