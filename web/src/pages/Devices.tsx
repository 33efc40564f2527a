// Devices: pairing requests (type the setup code printed on the device), paired devices
// (unpair), and cameras found on the network by mDNS (add one by hand).
import { useEffect, useState } from "preact/hooks";
import { type Candidate, type Device, type Page, type Pending, api, errorText, get, qs } from "../api";
import { dateTime } from "../format";
import { navigate } from "../router";
import { isOwner } from "../store";
import { DeviceFence } from "../widgets/fence";

const POLL_MS = 3000;

function usePoll<T>(path: string, enabled: boolean): [T[] | undefined, string | null, () => void] {
  const [items, setItems] = useState<T[] | undefined>(undefined);
  const [error, setError] = useState<string | null>(null);
  const [n, setN] = useState(0);
  useEffect(() => {
    if (!enabled) return;
    let gone = false;
    const load = () =>
      get<Page<T>>(path)
        .then((r) => {
          if (!gone) {
            setItems(r.items);
            setError(null);
          }
        })
        .catch((e) => !gone && setError(errorText(e)));
    void load();
    const t = setInterval(() => !document.hidden && void load(), POLL_MS);
    return () => {
      gone = true;
      clearInterval(t);
    };
  }, [path, enabled, n]);
  return [items, error, () => setN((x) => x + 1)];
}

/** "2 requests for cam-1 — from 192.168.1.5, 192.168.1.9: only pair the one you recognise" */
export function competingText(id: string, peers: string[]): string {
  return `${peers.length} requests for ${id} — from ${peers.join(", ")}: only pair the one you recognise`;
}

function PairRequest({ p, rivals, onDone }: { p: Pending; rivals: Pending[]; onDone: () => void }) {
  const [code, setCode] = useState("");
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  const id = `code-${p.device_id}-${p.request_id}`;
  const competing = rivals.length > 1;
  async function submit(e: Event) {
    e.preventDefault();
    const digits = code.replace(/[\s-]/g, "");
    if (!/^\d{8}$/.test(digits)) {
      setError("The setup code has 8 digits.");
      return;
    }
    setBusy(true);
    setError(null);
    try {
      // The hub answers once the device has checked the code too (up to half a minute).
      const body: { setup_code: string; request?: string } = { setup_code: digits };
      if (competing) body.request = p.request_id;
      await api("POST", `/api/pairing/${encodeURIComponent(p.device_id)}`, body);
      onDone();
    } catch (err) {
      setError(errorText(err));
    } finally {
      setBusy(false);
    }
  }
  return (
    <li class={`card pair-request${competing ? " competing" : ""}`} data-testid="pairing-request" data-device-id={p.device_id} data-request-id={p.request_id}>
      <h3>
        {p.model || p.kind} <span class="muted">({p.device_id})</span>
      </h3>
      {competing && (
        <p role="note" class="warn" data-testid="competing">
          {competingText(
            p.device_id,
            rivals.map((r) => r.peer),
          )}
        </p>
      )}
      <p class="small">
        {p.kind}, firmware {p.firmware || "unknown"}; from {p.peer}; asked {dateTime(p.received)}, expires {dateTime(p.expires)}
      </p>
      <form class="inline" onSubmit={submit}>
        <label for={id}>Setup code</label>
        <input id={id} name="setup_code" inputMode="numeric" autocomplete="off" maxLength={10} pattern="[0-9 \-]*" value={code} onInput={(e) => setCode(e.currentTarget.value)} placeholder="8 digits" />
        <button type="submit" class="primary" disabled={busy} aria-label={competing ? `Pair the request from ${p.peer}` : undefined}>
          {busy ? "Checking…" : "Pair"}
        </button>
      </form>
      {busy && <p class="small muted">Checking the code with the device…</p>}
      {error && (
        <p role="alert" class="error">
          {error}
        </p>
      )}
    </li>
  );
}

export function Devices() {
  const owner = isOwner();
  const [pending, pendingError, reloadPending] = usePoll<Pending>("/api/pairing", owner);
  const [devices, devicesError, reloadDevices] = usePoll<Device>("/api/devices", true);
  const [found, foundError] = usePoll<Candidate>("/api/discovery", owner);
  const [message, setMessage] = useState<string | null>(null);

  async function unpair(d: Device) {
    if (!window.confirm(`Unpair ${d.model || d.id}? Its credentials stop working at once.`)) return;
    try {
      await api("DELETE", `/api/devices/${encodeURIComponent(d.id)}`);
      setMessage(`${d.model || d.id} is unpaired.`);
      reloadDevices();
    } catch (e) {
      setMessage(`Cannot unpair: ${errorText(e)}`);
    }
  }

  function add(c: Candidate) {
    const host = c.addresses.find((a) => !a.includes(":")) ?? c.addresses[0] ?? "";
    const h = host.includes(":") ? `[${host}]` : host;
    const path = c.txt.path ?? c.txt.url ?? "";
    const url = `rtsp://${h}:${c.port}${path.startsWith("/") ? path : path ? `/${path}` : "/"}`;
    navigate(`/cameras${qs({ add: 1, name: c.instance.slice(0, 64), url })}`);
  }

  const rtsp = found?.filter((c) => c.kind === "rtsp") ?? [];
  return (
    <section class="page" aria-labelledby="dev-title">
      <h1 id="dev-title">Devices</h1>
      <p aria-live="polite" class="ok">
        {message}
      </p>
      {owner && (
        <section aria-labelledby="pair-title">
          <h2 id="pair-title">Waiting to pair</h2>
          {pendingError && (
            <p role="alert" class="error">
              Cannot load pairing requests: {pendingError}
            </p>
          )}
          {pending && pending.length === 0 && <p>No device is asking to pair. Put a new device in pairing mode and it appears here.</p>}
          <ul class="plain">
            {pending?.map((p) => (
              <PairRequest
                key={p.request_id}
                p={p}
                rivals={pending.filter((o) => o.device_id === p.device_id)}
                onDone={() => {
                  setMessage(`${p.model || p.device_id} is paired.`);
                  reloadPending();
                  reloadDevices();
                }}
              />
            ))}
          </ul>
        </section>
      )}
      <section aria-labelledby="paired-title">
        <h2 id="paired-title">Paired devices</h2>
        {devicesError && (
          <p role="alert" class="error">
            Cannot load devices: {devicesError}
          </p>
        )}
        {devices && devices.filter((d) => d.paired).length === 0 && <p>None yet.</p>}
        <ul class="plain">
          {devices
            ?.filter((d) => d.paired)
            .map((d) => (
              <li key={d.id} class="card device-row" data-testid="device-row" data-device-id={d.id}>
                <div class="row-head">
                  <h3>{d.model || d.id}</h3>
                  <span class={`badge ${d.availability === "online" ? "status-streaming" : "status-stopped"}`}>{d.availability || "unknown"}</span>
                  {owner && (
                    <button type="button" onClick={() => void unpair(d)} aria-label={`Unpair ${d.model || d.id}`}>
                      Unpair
                    </button>
                  )}
                </div>
                <p class="small">
                  {d.id} · {d.kind}, firmware {d.firmware || "unknown"} · paired {dateTime(d.paired_at)}
                  {d.last_seen ? ` · last seen ${dateTime(d.last_seen)}` : ""}
                </p>
                <DeviceFence
                  d={d}
                  owner={owner}
                  onChange={(m) => {
                    setMessage(m);
                    reloadDevices();
                  }}
                />
              </li>
            ))}
        </ul>
      </section>
      {owner && (
        <section aria-labelledby="found-title">
          <h2 id="found-title">Cameras found on the network</h2>
          {foundError && (
            <p role="alert" class="error">
              Cannot look for cameras: {foundError}
            </p>
          )}
          {found && rtsp.length === 0 && <p>No RTSP camera announces itself on the network (mDNS). You can still add one by its URL under Cameras.</p>}
          <ul class="plain">
            {rtsp.map((c) => (
              <li key={c.instance} class="card found-row">
                <div class="row-head">
                  <h3>{c.instance}</h3>
                  <button type="button" onClick={() => add(c)} aria-label={`Add ${c.instance}`}>
                    Add
                  </button>
                </div>
                <p class="small">
                  {c.addresses.join(", ")} port {c.port}
                </p>
              </li>
            ))}
          </ul>
        </section>
      )}
    </section>
  );
}
