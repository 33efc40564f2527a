// Cameras: the list with each camera's health, adding one (test the connection, then
// save), and editing one (name, recording mode, sensitivity, zones, remove).
import { useEffect, useState } from "preact/hooks";
import { type Camera, type MotionConfig, type Probe, type RecordingMode, type Zone, api, errorText, get } from "../api";
import { bytes, fps, kbps } from "../format";
import { navigate, useLocation } from "../router";
import { isOwner, refreshCameras, useCameras } from "../store";
import { StatusBadge } from "../widgets/status";
import { ZoneEditor } from "../widgets/zones";

const MAX_NAME = 64;
const MAX_URL = 1024;

export function Cameras() {
  const { cameras, camerasError } = useCameras();
  const loc = useLocation();
  const prefill = loc.query.get("add") !== null ? { name: loc.query.get("name") ?? "", url: loc.query.get("url") ?? "" } : null;
  const [adding, setAdding] = useState(prefill !== null);
  const [editing, setEditing] = useState<number | null>(null);
  useEffect(() => {
    if (prefill) setAdding(true);
  }, [loc.query.toString()]);
  const owner = isOwner();

  function closeAdd() {
    setAdding(false);
    if (prefill) navigate("/cameras", true);
  }

  return (
    <section class="page" aria-labelledby="cams-title">
      <div class="title-row">
        <h1 id="cams-title">Cameras</h1>
        {owner && !adding && (
          <button type="button" class="primary" onClick={() => setAdding(true)}>
            Add camera
          </button>
        )}
      </div>
      {!owner && <p class="small">Only the owner can add or change cameras.</p>}
      {adding && <AddCamera initial={prefill} onDone={closeAdd} />}
      {camerasError && (
        <p role="alert" class="error">
          Cannot load the cameras: {camerasError}
        </p>
      )}
      {cameras && cameras.length === 0 && <p>No cameras yet.</p>}
      <ul class="camera-list">
        {cameras?.map((c) => (
          <li key={c.id} class="card camera-row" data-testid="camera-row" data-camera-id={c.id}>
            <div class="row-head">
              <h2>{c.name}</h2>
              <StatusBadge status={c.status} />
              {owner && editing !== c.id && (
                <button type="button" onClick={() => setEditing(c.id)} aria-label={`Edit ${c.name}`}>
                  Edit
                </button>
              )}
            </div>
            {c.reason && <p class="error small">{c.reason}</p>}
            <dl class="facts">
              <div>
                <dt>Transport</dt>
                <dd>{c.transport ? c.transport.toUpperCase() : "—"}</dd>
              </div>
              <div>
                <dt>Decoder</dt>
                <dd>
                  {c.decoder ?? "—"}
                  {c.hardware_decoder ? " (hardware)" : ""}
                </dd>
              </div>
              <div>
                <dt>Frame rate</dt>
                <dd>{fps(c.fps)}</dd>
              </div>
              <div>
                <dt>Bitrate</dt>
                <dd>{kbps(c.bitrate_kbps)}</dd>
              </div>
              <div>
                <dt>Size</dt>
                <dd>{c.width && c.height ? `${c.width}×${c.height}` : "—"}</dd>
              </div>
              <div>
                <dt>Storage</dt>
                <dd>{bytes(c.storage_bytes)}</dd>
              </div>
              <div>
                <dt>Recording</dt>
                <dd>{c.recording_mode ?? "—"}</dd>
              </div>
              <div>
                <dt>Source</dt>
                <dd>{c.source === "config" ? "homehub.toml" : c.source}</dd>
              </div>
            </dl>
            {c.url && <p class="small url">{c.url}</p>}
            {editing === c.id && <EditCamera camera={c} onDone={() => setEditing(null)} />}
          </li>
        ))}
      </ul>
    </section>
  );
}

function probeText(p: Probe): string {
  return `${p.codec} · ${p.width}×${p.height} · ${fps(p.fps)} · ${p.transport.toUpperCase()}`;
}

function AddCamera({ initial, onDone }: { initial: { name: string; url: string } | null; onDone: () => void }) {
  const [name, setName] = useState(initial?.name ?? "");
  const [url, setUrl] = useState(initial?.url ?? "");
  const [sub, setSub] = useState("");
  const [probe, setProbe] = useState<Probe | null>(null);
  const [probedUrl, setProbedUrl] = useState<string | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState<"probe" | "save" | null>(null);

  const urlProblem = !url ? null : url.length > MAX_URL ? `The URL is longer than ${MAX_URL} characters.` : /^rtsps?:\/\//i.test(url) ? null : "The URL must start with rtsp:// or rtsps://.";
  const tested = probe !== null && probedUrl === url;

  async function test() {
    if (urlProblem || !url) {
      setError(urlProblem ?? "Enter the camera's RTSP URL.");
      return;
    }
    setBusy("probe");
    setError(null);
    setProbe(null);
    try {
      const p = await api<Probe>("POST", "/api/cameras/probe", { url });
      setProbe(p);
      setProbedUrl(url);
    } catch (e) {
      setError(`Connection test failed: ${errorText(e)}`);
    } finally {
      setBusy(null);
    }
  }

  async function save(e: Event) {
    e.preventDefault();
    if (!tested) return;
    const n = name.trim();
    if (!n || n.length > MAX_NAME) {
      setError(`The name needs 1 to ${MAX_NAME} characters.`);
      return;
    }
    setBusy("save");
    setError(null);
    try {
      await api<Camera>("POST", "/api/cameras", sub.trim() ? { name: n, url, substream_url: sub.trim() } : { name: n, url });
      await refreshCameras();
      onDone();
    } catch (err) {
      setError(`Cannot save: ${errorText(err)}`);
      setBusy(null);
    }
  }

  return (
    <form id="add-camera" class="card form" onSubmit={save} aria-labelledby="add-title">
      <h2 id="add-title">Add a camera</h2>
      <label>
        Name
        <input name="name" required maxLength={MAX_NAME} value={name} onInput={(e) => setName(e.currentTarget.value)} placeholder="Porch" />
      </label>
      <label>
        RTSP URL
        <input name="url" required maxLength={MAX_URL} inputMode="url" autocomplete="off" spellcheck={false} value={url} onInput={(e) => setUrl(e.currentTarget.value.trim())} placeholder="rtsp://user:password@192.168.1.20:554/stream1" aria-describedby="url-help" />
      </label>
      <p id="url-help" class="small">
        The password in the URL stays on the hub; it is never shown again.
      </p>
      <label>
        Substream URL <span class="muted">(optional, a smaller stream for motion and the grid)</span>
        <input name="substream_url" maxLength={MAX_URL} inputMode="url" autocomplete="off" spellcheck={false} value={sub} onInput={(e) => setSub(e.currentTarget.value.trim())} />
      </label>
      {urlProblem && <p class="error small">{urlProblem}</p>}
      <div aria-live="polite">
        {tested && probe && (
          <p data-testid="probe-result" class="ok">
            Connected: {probeText(probe)}
          </p>
        )}
        {busy === "probe" && <p role="status">Testing the connection (up to 10 s)…</p>}
      </div>
      {error && (
        <p role="alert" class="error">
          {error}
        </p>
      )}
      <div class="buttons">
        <button type="button" onClick={() => void test()} disabled={busy !== null}>
          Test connection
        </button>
        <button type="submit" class="primary" disabled={!tested || busy !== null}>
          Save
        </button>
        <button type="button" onClick={onDone}>
          Cancel
        </button>
      </div>
    </form>
  );
}

function EditCamera({ camera, onDone }: { camera: Camera; onDone: () => void }) {
  const [name, setName] = useState(camera.name);
  const [mode, setMode] = useState<RecordingMode | "">(camera.recording_mode_override ?? "");
  const [motion, setMotion] = useState<MotionConfig | null>(null);
  const [sensitivity, setSensitivity] = useState(5);
  const [zones, setZones] = useState<Zone[]>([]);
  const [error, setError] = useState<string | null>(null);
  const [status, setStatus] = useState<string | null>(null);
  const [zonesStatus, setZonesStatus] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  const editable = camera.editable !== false;

  useEffect(() => {
    get<MotionConfig>(`/api/cameras/${camera.id}/motion`)
      .then((m) => {
        setMotion(m);
        setSensitivity(m.sensitivity);
        setZones(m.zones.map((z) => ({ ...z, kind: z.kind === "include" ? "include" : "exclude" })));
      })
      .catch((e) => setError(`Cannot load the motion settings: ${errorText(e)}`));
  }, [camera.id]);

  async function putMotion(cfg: MotionConfig): Promise<void> {
    const saved = await api<MotionConfig>("PUT", `/api/cameras/${camera.id}/motion`, cfg);
    setMotion(saved);
  }

  async function save(e: Event) {
    e.preventDefault();
    const n = name.trim();
    if (!n || n.length > MAX_NAME) {
      setError(`The name needs 1 to ${MAX_NAME} characters.`);
      return;
    }
    setBusy(true);
    setError(null);
    setStatus(null);
    try {
      const patch: { name?: string; recording_mode?: RecordingMode | null } = {};
      if (n !== camera.name) patch.name = n;
      if ((camera.recording_mode_override ?? "") !== mode) patch.recording_mode = mode === "" ? null : mode;
      if (Object.keys(patch).length > 0) await api<Camera>("PATCH", `/api/cameras/${camera.id}`, patch);
      if (motion && motion.sensitivity !== sensitivity) await putMotion({ ...motion, sensitivity });
      await refreshCameras();
      setStatus("Saved");
    } catch (err) {
      setError(`Cannot save: ${errorText(err)}`);
    } finally {
      setBusy(false);
    }
  }

  async function saveZones() {
    if (!motion) return;
    setZonesStatus("Saving…");
    try {
      await putMotion({ ...motion, sensitivity, zones });
      setZonesStatus("Saved");
    } catch (err) {
      setZonesStatus(`Not saved: ${errorText(err)}`);
    }
  }

  async function remove() {
    if (!window.confirm(`Remove ${camera.name}? It stops at once; its recordings stay until retention removes them.`)) return;
    setBusy(true);
    setError(null);
    try {
      await api("DELETE", `/api/cameras/${camera.id}`);
      await refreshCameras();
      onDone();
    } catch (err) {
      setError(`Cannot remove: ${errorText(err)}`);
      setBusy(false);
    }
  }

  const snapshot = `${camera.snapshot_url ?? `/api/cameras/${camera.id}/snapshot.jpg`}?width=640`;
  return (
    <form id="edit-camera" class="form edit" onSubmit={save} aria-label={`Edit ${camera.name}`}>
      <label>
        Name
        <input name="name" required maxLength={MAX_NAME} value={name} onInput={(e) => setName(e.currentTarget.value)} disabled={!editable} aria-describedby={editable ? undefined : "cfg-note"} />
      </label>
      {!editable && (
        <p id="cfg-note" class="small">
          This camera is defined in homehub.toml: change its name or URL there.
        </p>
      )}
      <label>
        Recording
        <select name="recording_mode" value={mode} onChange={(e) => setMode(e.currentTarget.value as RecordingMode | "")}>
          <option value="">Hub default{camera.recording_mode && camera.recording_mode_override == null ? ` (${camera.recording_mode})` : ""}</option>
          <option value="continuous">Continuous</option>
          <option value="events">Only motion events</option>
          <option value="off">Off</option>
        </select>
      </label>
      <label>
        Motion sensitivity: <output>{sensitivity}</output> <span class="muted">(1 = only large movement, 10 = the slightest)</span>
        <input name="sensitivity" type="range" min={1} max={10} step={1} value={sensitivity} onInput={(e) => setSensitivity(Number(e.currentTarget.value))} disabled={!motion} />
      </label>
      {error && (
        <p role="alert" class="error">
          {error}
        </p>
      )}
      <p aria-live="polite" class="ok">
        {status}
      </p>
      <div class="buttons">
        <button type="submit" class="primary" disabled={busy}>
          Save
        </button>
        <button type="button" onClick={onDone}>
          Close
        </button>
        <button type="button" class="danger" onClick={() => void remove()} disabled={busy || !editable} title={editable ? undefined : "Defined in homehub.toml"}>
          Remove
        </button>
      </div>
      <fieldset class="zones-box">
        <legend>Motion zones</legend>
        <p class="small">Exclude zones are ignored (a road, a tree); with include zones, only they count.</p>
        <ZoneEditor snapshot={snapshot} cameraName={camera.name} zones={zones} onChange={(z) => {
          setZones(z);
          setZonesStatus(null);
        }} />
        <div class="buttons">
          <button type="button" onClick={() => void saveZones()} disabled={!motion}>
            Save zones
          </button>
          <span data-testid="zones-status" role="status" aria-live="polite" class={zonesStatus?.startsWith("Not saved") ? "error" : "ok"}>
            {zonesStatus}
          </span>
        </div>
      </fieldset>
    </form>
  );
}
