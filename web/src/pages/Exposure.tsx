// What leaves this house (owner only): with the cloud off, that nothing does; with it on,
// where the clips go, what the storage provider can see of them (counted from the bucket
// itself) and what it cannot, who can open them, the newest uploads as the provider lists
// them, and the uploads since the hub started.
import { useEffect, useState } from "preact/hooks";
import { type CloudExposure, type Exposure, errorText, getExposure } from "../api";
import { bytes, dateTime, plural } from "../format";

/** The config that turns the cloud on (README "Cloud relay"). */
const CONFIG_EXAMPLE = `[cloud]
store = "s3://my-bucket/home"
# "" for Amazon S3
endpoint = "https://s3.example.net"
region = "us-east-1"
# public keys: who can open the clips
recipients = ["age1…"]
access_key_id = "…"
secret_access_key = "…"`;

export function ExposurePage() {
  const [x, setX] = useState<Exposure | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  const [n, setN] = useState(0);

  useEffect(() => {
    let gone = false;
    setBusy(true);
    getExposure()
      .then((r) => {
        if (gone) return;
        setX(r);
        setError(null);
      })
      .catch((e) => !gone && setError(`Cannot ask the hub what leaves the house: ${errorText(e)}`))
      .finally(() => !gone && setBusy(false));
    return () => {
      gone = true;
    };
  }, [n]);

  return (
    <section class="page" aria-labelledby="exposure-title">
      <h1 id="exposure-title">What leaves this house</h1>
      {error && (
        <p role="alert" class="error">
          {error}
        </p>
      )}
      {!x && !error && <p role="status">Loading…</p>}
      {x && !x.enabled && <NothingLeaves />}
      {x && x.enabled && <Cloud x={x} busy={busy} again={() => setN((k) => k + 1)} />}
    </section>
  );
}

function NothingLeaves() {
  return (
    <>
      <div class="card exposure-off">
        <p class="exposure-statement" data-testid="nothing-leaves">
          Nothing leaves this house: no cloud is set up.
        </p>
        <p>No bucket is configured, so the hub sends nothing to any cloud. Recordings, events and every setting stay on the hub's own disk.</p>
      </div>
      <section aria-labelledby="setup-cloud-title">
        <h2 id="setup-cloud-title">To keep copies of the clips in a cloud</h2>
        <ol class="steps">
          <li>
            On a computer that is not the hub, make a key: <code>homehub keys new &gt; owner.key</code>. Keep that file offline: it alone opens your clips.
          </li>
          <li>
            Add a <code>[cloud]</code> section to the hub's config (<code>/etc/homehub/homehub.toml</code>) with the bucket, its access key and the key's public
            half (<code>age1…</code>) as a recipient:
          </li>
        </ol>
        <pre class="config">
          <code>{CONFIG_EXAMPLE}</code>
        </pre>
        <p>Then restart the hub. The clips go up encrypted to the recipients only; this page then shows what the storage provider can see.</p>
      </section>
    </>
  );
}

function Cloud({ x, busy, again }: { x: CloudExposure; busy: boolean; again: () => void }) {
  const recent = [...(x.recent ?? [])].sort((a, b) => Date.parse(b.uploaded) - Date.parse(a.uploaded));
  const listed = typeof x.objects === "number";
  return (
    <>
      {x.error && (
        <p role="alert" class="error">
          The bucket could not be listed: {x.error}
        </p>
      )}

      <section aria-labelledby="where-title">
        <h2 id="where-title">Where the clips go</h2>
        <dl class="facts exposure-where">
          <div>
            <dt>Store</dt>
            <dd>{x.store ? <code>{x.store}</code> : "—"}</dd>
          </div>
          <div>
            <dt>Endpoint</dt>
            <dd>{x.endpoint === "" ? "Amazon S3" : x.endpoint ? <code>{x.endpoint}</code> : "—"}</dd>
          </div>
          <div>
            <dt>Region</dt>
            <dd>{x.region || "—"}</dd>
          </div>
        </dl>
      </section>

      <section aria-labelledby="can-see-title">
        <div class="title-row">
          <h2 id="can-see-title">What the storage provider can see</h2>
          <button type="button" onClick={again} disabled={busy}>
            {busy ? "Listing…" : "List the bucket again"}
          </button>
        </div>
        <div class="card exposure-card">
          {listed ? (
            <p class="exposure-count">
              <span data-testid="object-count">{x.objects}</span> {x.objects === 1 ? "object" : "objects"}
              {x.truncated ? " or more" : ""}, {bytes(x.bytes)} in all
              {x.truncated ? " (at least: the listing stopped at 100 000 objects)" : ""}.
            </p>
          ) : (
            <p>The bucket could not be listed just now, so what it holds is not shown.</p>
          )}
          {x.listed_at && (
            <p class="small">
              Counted from the bucket itself, <time dateTime={x.listed_at}>{dateTime(x.listed_at)}</time>.
            </p>
          )}
          <ul class="exposure-list">
            <li>How many objects there are and when each was uploaded (the provider's own clock): the table below.</li>
            <li>Their sizes, only roughly: every object is padded, so its size says little about the clip inside.</li>
            <li>Each object's name: this hub's id and 32 random characters. No camera, date or place is in it.</li>
            <li>
              The hub id{x.hub_id ? <>, <code class="key">{x.hub_id}</code>:</> : ":"} random, made by the hub, not your name or address.
            </li>
            <li>The address the uploads come from (your internet connection), as with any website you use.</li>
          </ul>
        </div>
      </section>

      <section aria-labelledby="cannot-see-title">
        <h2 id="cannot-see-title">What it cannot see</h2>
        <ul class="card exposure-list">
          <li>Camera names.</li>
          <li>Who lives here, or who may watch.</li>
          <li>What happened in any clip: every object is encrypted before it leaves the hub.</li>
          <li>When motion happened, beyond the times the pieces were uploaded.</li>
          <li>Your home network: Wi-Fi names, addresses inside the house.</li>
          <li>Your devices: which ones are paired with the hub, their names and settings.</li>
        </ul>
      </section>

      <section aria-labelledby="recipients-title">
        <h2 id="recipients-title">Who can open the clips</h2>
        <p>
          Every object is encrypted (age) to these public keys. Only whoever holds a matching private key can open a clip; the storage provider holds none of them.
        </p>
        {x.recipients === undefined ? (
          <p>Not known just now.</p>
        ) : x.recipients.length === 0 ? (
          <p>No recipients are set.</p>
        ) : (
          <ul class="plain recipients" data-testid="recipients">
            {x.recipients.map((r) => (
              <li key={r}>
                <code class="key">{r}</code>
              </li>
            ))}
          </ul>
        )}
      </section>

      <section aria-labelledby="recent-title">
        <h2 id="recent-title">The last 50 uploads, as the provider sees them</h2>
        {!listed && recent.length === 0 ? (
          <p>Not known while the bucket cannot be listed.</p>
        ) : recent.length === 0 ? (
          <p>Nothing has been uploaded yet.</p>
        ) : (
          <>
            <p class="small">{plural(recent.length, "object", "objects")}, newest first. Sizes are as stored: padded and encrypted.</p>
            <table class="data-table stack" data-testid="exposure">
              <caption class="sr-only">The newest uploads, as the storage provider lists them</caption>
              <thead>
                <tr>
                  <th scope="col">Name</th>
                  <th scope="col">Size</th>
                  <th scope="col">Uploaded</th>
                </tr>
              </thead>
              <tbody>
                {recent.map((o) => (
                  <tr key={o.name} data-testid="exposure-row">
                    <td data-label="Name">
                      <code>{o.name}</code>
                    </td>
                    <td data-label="Size" class="nowrap">
                      {bytes(o.bytes)}
                    </td>
                    <td data-label="Uploaded" class="nowrap">
                      <time dateTime={o.uploaded}>{dateTime(o.uploaded)}</time>
                    </td>
                  </tr>
                ))}
              </tbody>
            </table>
          </>
        )}
      </section>

      <section aria-labelledby="since-title">
        <h2 id="since-title">Since the hub started</h2>
        <dl class="facts" data-testid="exposure-counters">
          <div>
            <dt>Uploads</dt>
            <dd>{count(x.uploads_since_start)}</dd>
          </div>
          <div>
            <dt>Sent</dt>
            <dd>{bytes(x.bytes_sent_since_start)}</dd>
          </div>
          <div>
            <dt>Waiting to go up</dt>
            <dd>{count(x.queue_length)}</dd>
          </div>
          <div>
            <dt>Last upload that worked</dt>
            <dd>{x.last_success ? <time dateTime={x.last_success}>{dateTime(x.last_success)}</time> : x.last_success === null ? "None yet" : "—"}</dd>
          </div>
        </dl>
      </section>
    </>
  );
}

function count(n: number | undefined): string {
  return typeof n === "number" && Number.isFinite(n) ? n.toLocaleString() : "—";
}
