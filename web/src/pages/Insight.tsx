// Insight (owner only): what the hub's own records say over the last days: motion events
// per camera per day, the media kept per camera, devices' connections and failures, and
// sign-ins and failed ones per day. Drawn here as inline SVG (widgets/charts), each chart
// with its numbers in a table; the figures never leave the hub.
import type { ComponentChildren } from "preact";
import { useEffect, useState } from "preact/hooks";
import { type Insight, errorText, getInsight } from "../api";
import { bytes, plural, utcDay } from "../format";
import { DayBars, HBars } from "../widgets/charts";

const PERIODS = [7, 14, 30, 60];

const sum = (xs: number[]) => xs.reduce((a, b) => a + (Number.isFinite(b) ? b : 0), 0);

/** One number per day, whatever length the hub sent. */
const perDay = (days: string[], xs: number[] | undefined) => days.map((_, i) => xs?.[i] ?? 0);

/** "most on 3 Dec (7)", or "" when all are zero. */
function peak(days: string[], xs: number[]): string {
  let best = -1;
  xs.forEach((v, i) => {
    if (v > 0 && (best < 0 || v >= xs[best])) best = i;
  });
  return best < 0 ? "" : `, most on ${utcDay(days[best], true)} (${xs[best].toLocaleString()})`;
}

export function InsightPage() {
  const [days, setDays] = useState(14);
  const [data, setData] = useState<Insight | null>(null);
  const [shownDays, setShownDays] = useState(0);
  const [error, setError] = useState<string | null>(null);
  const busy = data !== null && shownDays !== days;

  useEffect(() => {
    let gone = false;
    getInsight(days)
      .then((r) => {
        if (gone) return;
        setData(r);
        setShownDays(days);
        setError(null);
      })
      .catch((e) => {
        if (gone) return;
        setError(`Cannot load the figures: ${errorText(e)}`);
        setShownDays(days); // show what there is, not "Loading…" forever
      });
    return () => {
      gone = true;
    };
  }, [days]);

  return (
    <section class="page" aria-labelledby="insight-title">
      <h1 id="insight-title">Insight</h1>
      <p class="notice" data-testid="insight-local">
        These figures are worked out on the hub from its own records. They never leave the hub.
      </p>
      <form class="toolbar" onSubmit={(e) => e.preventDefault()} aria-label="Period">
        <label>
          Period
          <select name="days" value={String(days)} onChange={(e) => setDays(Number(e.currentTarget.value))}>
            {PERIODS.map((p) => (
              <option key={p} value={String(p)}>
                Last {p} days
              </option>
            ))}
          </select>
        </label>
      </form>
      {error && (
        <p role="alert" class="error">
          {error}
        </p>
      )}
      <p role="status" class="small">
        {(!data && !error) || busy ? "Loading…" : ""}
      </p>
      {data && (
        <div data-testid="insight">
          <Motion d={data} />
          <StorageChart d={data} />
          <Devices d={data} />
          <SignIns d={data} />
        </div>
      )}
    </section>
  );
}

function Numbers({ summary, children }: { summary: string; children: ComponentChildren }) {
  return (
    <details class="chart-numbers">
      <summary>{summary}</summary>
      {children}
    </details>
  );
}

function Motion({ d }: { d: Insight }) {
  const days = d.days ?? [];
  const cams = (d.motion ?? []).map((c) => ({ ...c, per_day: perDay(days, c.per_day) }));
  return (
    <section aria-labelledby="motion-title" data-testid="chart-motion">
      <h2 id="motion-title">Motion events per day</h2>
      {cams.length === 0 ? (
        <p>No cameras yet, so there is no motion to show.</p>
      ) : days.length === 0 ? (
        <p>No days to show.</p>
      ) : (
        <>
          <p class="small">Events that started each day (UTC dates), one chart per camera.</p>
          {cams.map((c) => {
            const total = sum(c.per_day);
            return (
              <div key={c.camera_id} class="card chart-card">
                <h3>{c.name}</h3>
                {total === 0 ? (
                  <p class="chart-none">No motion events in these {plural(days.length, "day", "days")}.</p>
                ) : (
                  <DayBars
                    days={days}
                    series={[{ name: "motion events", cls: "s-motion", values: c.per_day }]}
                    label={`${c.name}: ${plural(total, "motion event", "motion events")} in ${plural(days.length, "day", "days")}${peak(days, c.per_day)}.`}
                  />
                )}
              </div>
            );
          })}
          <Numbers summary="Motion events as a table">
            <table class="data-table chart-table">
              <caption class="sr-only">Motion events per day and camera</caption>
              <thead>
                <tr>
                  <th scope="col">Day</th>
                  {cams.map((c) => (
                    <th key={c.camera_id} scope="col">
                      {c.name}
                    </th>
                  ))}
                </tr>
              </thead>
              <tbody>
                {days.map((day, i) => (
                  <tr key={day}>
                    <th scope="row">
                      <time dateTime={day}>{utcDay(day, true)}</time>
                    </th>
                    {cams.map((c) => (
                      <td key={c.camera_id}>{c.per_day[i].toLocaleString()}</td>
                    ))}
                  </tr>
                ))}
              </tbody>
            </table>
          </Numbers>
        </>
      )}
    </section>
  );
}

function StorageChart({ d }: { d: Insight }) {
  const cams = d.storage ?? [];
  const total = sum(cams.map((c) => c.bytes));
  return (
    <section aria-labelledby="kept-title" data-testid="chart-storage">
      <h2 id="kept-title">Media kept per camera</h2>
      {cams.length === 0 ? (
        <p>No cameras yet, so no media is kept.</p>
      ) : (
        <>
          <p class="small">Recordings and event clips on the hub's disk now: {bytes(total)} in all.</p>
          <div class="card chart-card">
            <HBars
              rows={cams.map((c) => ({ key: String(c.camera_id), label: c.name, values: [{ value: c.bytes, cls: "s-main", text: bytes(c.bytes) }] }))}
              label={`Media kept now: ${cams.map((c) => `${c.name} ${bytes(c.bytes)}`).join(", ")}; ${bytes(total)} in all.`}
            />
          </div>
          <Numbers summary="Media kept as a table">
            <table class="data-table chart-table">
              <caption class="sr-only">Media kept per camera</caption>
              <thead>
                <tr>
                  <th scope="col">Camera</th>
                  <th scope="col">Kept</th>
                </tr>
              </thead>
              <tbody>
                {cams.map((c) => (
                  <tr key={c.camera_id}>
                    <th scope="row">{c.name}</th>
                    <td>{bytes(c.bytes)}</td>
                  </tr>
                ))}
              </tbody>
            </table>
          </Numbers>
        </>
      )}
    </section>
  );
}

function Legend({ items }: { items: [cls: string, text: string][] }) {
  return (
    <p class="legend small" aria-hidden="true">
      {items.map(([cls, text]) => (
        <span key={cls} class="legend-item">
          <span class={`swatch ${cls}`} />
          {text}
        </span>
      ))}
    </p>
  );
}

function Devices({ d }: { d: Insight }) {
  const devs = d.devices ?? [];
  return (
    <section aria-labelledby="conn-title" data-testid="chart-devices">
      <h2 id="conn-title">Device connections</h2>
      {devs.length === 0 ? (
        <p>No devices have connected to the hub.</p>
      ) : (
        <>
          <p class="small">How often each device connected to the hub, and how many of those connections failed.</p>
          <div class="card chart-card">
            <Legend
              items={[
                ["s-main", "Connections"],
                ["s-failed", "Failed"],
              ]}
            />
            <HBars
              rows={devs.map((v) => ({
                key: v.id,
                label: v.paired ? v.id : `${v.id} (not paired)`,
                values: [
                  { value: v.connections, cls: "s-main", text: v.connections.toLocaleString(), name: "connections" },
                  { value: v.failed_connections, cls: "s-failed", text: v.failed_connections.toLocaleString(), name: "failed" },
                ],
              }))}
              label={`Connections per device: ${devs.map((v) => `${v.id} ${v.connections.toLocaleString()}, ${v.failed_connections.toLocaleString()} failed`).join("; ")}.`}
            />
          </div>
          <Numbers summary="Device connections as a table">
            <table class="data-table chart-table">
              <caption class="sr-only">Connections and failed connections per device</caption>
              <thead>
                <tr>
                  <th scope="col">Device</th>
                  <th scope="col">Connections</th>
                  <th scope="col">Failed</th>
                  <th scope="col">Paired</th>
                </tr>
              </thead>
              <tbody>
                {devs.map((v) => (
                  <tr key={v.id}>
                    <th scope="row">
                      <code>{v.id}</code>
                    </th>
                    <td>{v.connections.toLocaleString()}</td>
                    <td>{v.failed_connections.toLocaleString()}</td>
                    <td>{v.paired ? "Yes" : "No"}</td>
                  </tr>
                ))}
              </tbody>
            </table>
          </Numbers>
        </>
      )}
    </section>
  );
}

function SignIns({ d }: { d: Insight }) {
  const days = d.days ?? [];
  const ok = perDay(days, d.sign_ins?.per_day);
  const failed = perDay(days, d.sign_ins?.failed_per_day);
  return (
    <section aria-labelledby="signins-title" data-testid="chart-sign-ins">
      <h2 id="signins-title">Sign-ins per day</h2>
      {days.length === 0 ? (
        <p>No days to show.</p>
      ) : sum(ok) + sum(failed) === 0 ? (
        <p>No sign-ins and no failed sign-ins in these {plural(days.length, "day", "days")}.</p>
      ) : (
        <>
          <p class="small">From the audit log: sign-ins and failed sign-ins each day (UTC dates).</p>
          <div class="card chart-card">
            <Legend
              items={[
                ["s-main", "Sign-ins"],
                ["s-failed", "Failed"],
              ]}
            />
            <DayBars
              days={days}
              series={[
                { name: "sign-ins", cls: "s-main", values: ok },
                { name: "failed sign-ins", cls: "s-failed", values: failed },
              ]}
              label={`${plural(sum(ok), "sign-in", "sign-ins")} and ${plural(sum(failed), "failed sign-in", "failed sign-ins")} in ${plural(days.length, "day", "days")}${
                sum(failed) > 0 ? `; failures ${peak(days, failed).slice(2)}` : ""
              }.`}
            />
          </div>
          <Numbers summary="Sign-ins as a table">
            <table class="data-table chart-table">
              <caption class="sr-only">Sign-ins and failed sign-ins per day</caption>
              <thead>
                <tr>
                  <th scope="col">Day</th>
                  <th scope="col">Sign-ins</th>
                  <th scope="col">Failed</th>
                </tr>
              </thead>
              <tbody>
                {days.map((day, i) => (
                  <tr key={day}>
                    <th scope="row">
                      <time dateTime={day}>{utcDay(day, true)}</time>
                    </th>
                    <td>{ok[i].toLocaleString()}</td>
                    <td>{failed[i].toLocaleString()}</td>
                  </tr>
                ))}
              </tbody>
            </table>
          </Numbers>
        </>
      )}
    </section>
  );
}
