// Audit (owner only): what was done on the hub and by whom, newest first, filtered by
// action and by who did it, a page at a time ("Older", "Newer"), and the rolled-up counts.
import { useEffect, useState } from "preact/hooks";
import { type AuditId, type AuditPage, errorText, getAudit } from "../api";
import { dateTime } from "../format";

const PAGE_SIZE = 50;

/** The detail as text, whatever shape the hub gave it. */
function detailText(d: unknown): string {
  if (d === null || d === undefined) return "";
  if (typeof d === "string") return d;
  if (typeof d === "object" && !Array.isArray(d)) {
    return Object.entries(d as Record<string, unknown>)
      .map(([k, v]) => `${k}: ${typeof v === "string" ? v : JSON.stringify(v)}`)
      .join(", ");
  }
  return JSON.stringify(d);
}

export function Audit() {
  const [action, setAction] = useState("");
  const [actor, setActor] = useState("");
  const [actorDraft, setActorDraft] = useState("");
  // The `before` of each page shown so far: the last is the current page (null: newest).
  const [cursors, setCursors] = useState<(AuditId | null)[]>([null]);
  // The page shown and the query it answers (until the next one answers, it is stale).
  const [page, setPage] = useState<AuditPage | null>(null);
  const [pageKey, setPageKey] = useState("");
  // Every action seen, so the list does not shrink while a filter is on.
  const [actions, setActions] = useState<string[]>([]);
  const [error, setError] = useState<string | null>(null);
  const before = cursors[cursors.length - 1];
  const key = JSON.stringify([action, actor, before]);
  const busy = page !== null && pageKey !== key;

  useEffect(() => {
    let gone = false;
    getAudit({ action, actor, before, limit: PAGE_SIZE })
      .then((r) => {
        if (gone) return;
        setPage(r);
        setPageKey(key);
        setActions((a) => [...new Set([...a, ...(r.actions ?? [])])].sort());
        setError(null);
      })
      .catch((e) => {
        if (gone) return;
        setError(`Cannot load the audit log: ${errorText(e)}`);
        setPageKey(key); // show what there is, not "Loading…" forever
      });
    return () => {
      gone = true;
    };
  }, [action, actor, before]);

  function filter(e: Event) {
    e.preventDefault();
    setActor(actorDraft.trim());
    setCursors([null]);
  }

  const items = page?.items ?? [];
  const pageNo = cursors.length;
  return (
    <section class="page" aria-labelledby="audit-title">
      <h1 id="audit-title">Audit log</h1>
      <form class="toolbar" onSubmit={filter} aria-label="Filter the audit log">
        <label>
          Action
          <select
            name="action"
            value={action}
            onChange={(e) => {
              setAction(e.currentTarget.value);
              setCursors([null]);
            }}
          >
            <option value="">All actions</option>
            {actions.map((a) => (
              <option key={a} value={a}>
                {a}
              </option>
            ))}
          </select>
        </label>
        <label>
          Who
          <input name="actor" type="search" maxLength={254} value={actorDraft} onInput={(e) => setActorDraft(e.currentTarget.value)} placeholder="email or device" />
        </label>
        <button type="submit">Filter</button>
      </form>
      {error && (
        <p role="alert" class="error">
          {error}
        </p>
      )}
      {!page && !error && <p role="status">Loading…</p>}
      {page && (
        <>
          <p role="status" class="small">
            {busy ? "Loading…" : items.length === 0 ? "No entries." : `Page ${pageNo}: ${items.length} ${items.length === 1 ? "entry" : "entries"}, newest first.`}
          </p>
          {items.length > 0 && (
            <table class="data-table stack audit-table" data-testid="audit">
              <caption class="sr-only">Audit entries, newest first</caption>
              <thead>
                <tr>
                  <th scope="col">Time</th>
                  <th scope="col">Who</th>
                  <th scope="col">Action</th>
                  <th scope="col">Detail</th>
                </tr>
              </thead>
              <tbody>
                {items.map((it) => (
                  <tr key={String(it.id)} data-testid="audit-row" data-action={it.action}>
                    <td data-label="Time">
                      <time dateTime={it.at}>{dateTime(it.at)}</time>
                    </td>
                    <td data-label="Who">{it.actor}</td>
                    <td data-label="Action">
                      <code>{it.action}</code>
                    </td>
                    <td data-label="Detail">{detailText(it.detail)}</td>
                  </tr>
                ))}
              </tbody>
            </table>
          )}
          <div class="buttons pager">
            <button type="button" onClick={() => setCursors((c) => c.slice(0, -1))} disabled={busy || cursors.length <= 1}>
              Newer
            </button>
            <button type="button" onClick={() => page.next != null && setCursors((c) => [...c, page.next as AuditId])} disabled={busy || page.next == null}>
              Older
            </button>
          </div>
          <section aria-labelledby="rollup-title">
            <h2 id="rollup-title">Summary</h2>
            <p class="small">Entries the hub keeps as counts (such as repeated failed sign-ins), with when each first and last happened.</p>
            {(page.rolled_up ?? []).length === 0 ? (
              <p>Nothing rolled up.</p>
            ) : (
              <table class="data-table stack" data-testid="audit-rollup">
                <caption class="sr-only">Rolled-up entries</caption>
                <thead>
                  <tr>
                    <th scope="col">Action</th>
                    <th scope="col">Count</th>
                    <th scope="col">First</th>
                    <th scope="col">Last</th>
                  </tr>
                </thead>
                <tbody>
                  {page.rolled_up.map((r) => (
                    <tr key={`${r.action} ${r.first}`}>
                      <th scope="row">
                        <code>{r.action}</code>
                      </th>
                      <td data-label="Count">{r.count}</td>
                      <td data-label="First">
                        <time dateTime={r.first}>{dateTime(r.first)}</time>
                      </td>
                      <td data-label="Last">
                        <time dateTime={r.last}>{dateTime(r.last)}</time>
                      </td>
                    </tr>
                  ))}
                </tbody>
              </table>
            )}
          </section>
        </>
      )}
    </section>
  );
}
