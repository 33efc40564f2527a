// What leaves this house (owner only): with the cloud off, that nothing does; with it on,
// where the clips go, what the storage provider can see of them (counted from the bucket
// itself) and what it cannot, who can open them, the newest uploads as the provider lists
// them, and the uploads since the hub started. The owner manages who can open the clips
// here (the list the hub encrypts new clips to; a key can be made in this browser, whose
// secret never goes to the hub), sets, tests and switches off the store, watches the
// upload queue, and gets the away page (downloaded, or put in the bucket).
import * as age from "age-encryption";
import { useEffect, useRef, useState } from "preact/hooks";
import {
  AWAY_PAGE_URL,
  type AwayPage,
  type CloudExposure,
  type CloudQueue,
  type CloudRecipients,
  type CloudSettings,
  type Exposure,
  type StoreFields,
  errorText,
  getCloudQueue,
  getCloudRecipients,
  getCloudSettings,
  getExposure,
  putAwayPage,
  setCloudRecipients,
  setCloudSettings,
  testCloudStore,
} from "../api";
import { bytes, dateTime, plural } from "../format";

/** The file a key made in this browser is saved as. */
const KEY_FILE = "homehub-cloud-key.txt";

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
      {x && !x.enabled && <NothingLeaves again={() => setN((k) => k + 1)} />}
      {x && x.enabled && <Cloud x={x} busy={busy} again={() => setN((k) => k + 1)} />}
    </section>
  );
}

function NothingLeaves({ again }: { again: () => void }) {
  return (
    <>
      <div class="card exposure-off">
        <p class="exposure-statement" data-testid="nothing-leaves">
          Nothing leaves this house: no cloud is set up.
        </p>
        <p>No bucket is set, so the hub sends nothing to any cloud. Recordings, events and every setting stay on the hub's own disk.</p>
      </div>
      <h2 class="setup-title">To keep encrypted copies of the clips in a cloud</h2>
      <p>Two steps: first who can open the clips, then the bucket they go to. The clips are encrypted on the hub; the storage provider can open none of them.</p>
      <Recipients />
      <StoreSection again={again} />
      <details class="card">
        <summary>Or set it in the config file</summary>
        <ol class="steps">
          <li>
            On a computer that is not the hub, make a key: <code>homehub keys new &gt; owner.key</code>. Keep that file offline: it alone opens your clips.
          </li>
          <li>
            Add a <code>[cloud]</code> section to the hub's config (<code>/etc/homehub/homehub.toml</code>) with the bucket, its access key and the key's public
            half (<code>age1…</code>) as a recipient, then restart the hub:
          </li>
        </ol>
        <pre class="config">
          <code>{CONFIG_EXAMPLE}</code>
        </pre>
      </details>
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
        <StoreTest />
      </section>

      <StoreSection again={again} />
      <Queue />
      <Away />

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

      <Recipients fallback={x.recipients} />

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

/** Writes one encrypted probe object to the bucket in use and deletes it, and says how it went. */
function StoreTest() {
  const [busy, setBusy] = useState(false);
  const [ms, setMs] = useState<number | null>(null);
  const [error, setError] = useState<string | null>(null);

  async function run() {
    setBusy(true);
    setMs(null);
    setError(null);
    try {
      const r = await testCloudStore();
      setMs(Math.round(r.ms));
    } catch (e) {
      setError(errorText(e));
    } finally {
      setBusy(false);
    }
  }

  return (
    <div class="store-test">
      <div class="buttons">
        <button type="button" onClick={() => void run()} disabled={busy}>
          {busy ? "Testing the store…" : "Test the store"}
        </button>
      </div>
      {error && (
        <p role="alert" class="error" data-testid="store-test-result">
          The store does not work: {error}
        </p>
      )}
      <p role="status" class="ok" data-testid={ms === null ? undefined : "store-test-result"}>
        {ms === null ? null : `The store works: an encrypted probe was written and deleted in ${ms} ms.`}
      </p>
    </div>
  );
}

/** `age1…` and the last 8 characters: enough to tell the recipients apart. */
function short(r: string): string {
  return `age1…${r.slice(-8)}`;
}

/** A key made in this browser, not yet added. The secret is only in the blob behind `url`. */
interface NewKey {
  recipient: string;
  url: string;
}

type Where = "list" | "add" | "key";

/** Who can open the clips: the recipients, with removing, adding, and a key made in the page. */
function Recipients({ fallback }: { fallback?: string[] }) {
  const [list, setList] = useState<CloudRecipients | null>(null);
  const [loadError, setLoadError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<{ where: Where; text: string } | null>(null);
  const [status, setStatus] = useState<string | null>(null);
  const [draft, setDraft] = useState("");
  const [key, setKey] = useState<NewKey | null>(null);
  const [making, setMaking] = useState(false);
  const heading = useRef<HTMLHeadingElement>(null);
  const panel = useRef<HTMLDivElement>(null);
  const url = useRef<string | null>(null);

  useEffect(() => {
    let gone = false;
    getCloudRecipients()
      .then((r) => {
        if (gone) return;
        setList(r);
        setLoadError(null);
      })
      .catch((e) => !gone && setLoadError(`Cannot ask the hub who can open the clips: ${errorText(e)}`));
    return () => {
      gone = true;
      // Leaving the page forgets a key that was made and not added.
      if (url.current) URL.revokeObjectURL(url.current);
      url.current = null;
    };
  }, []);

  useEffect(() => {
    if (key) panel.current?.focus();
  }, [key]);

  /** Forgets the key made in this browser: the blob (the only copy of its secret here) goes. */
  function forget() {
    if (url.current) URL.revokeObjectURL(url.current);
    url.current = null;
    setKey(null);
  }

  async function save(next: string[], where: Where, said: (r: CloudRecipients) => string): Promise<boolean> {
    setBusy(true);
    setError(null);
    setStatus(null);
    try {
      const r = await setCloudRecipients(next);
      setList(r);
      setStatus(said(r));
      return true;
    } catch (e) {
      setError({ where, text: errorText(e) });
      return false;
    } finally {
      setBusy(false);
    }
  }

  const to = (r: CloudRecipients) => `new clips are encrypted to ${plural(r.recipients.length, "recipient", "recipients")} from now on`;

  async function remove(r: string) {
    if (!list) return;
    const ok = await save(
      list.recipients.filter((x) => x !== r),
      "list",
      (n) => `Removed ${short(r)}: ${to(n)}. Clips already in the bucket can still be opened with its key.`,
    );
    // Its button is gone: back to the top of the section.
    if (ok) heading.current?.focus();
  }

  async function add(e: Event) {
    e.preventDefault();
    if (!list) return;
    const text = draft.trim();
    setStatus(null);
    if (!text) {
      setError({ where: "add", text: "Paste a recipient (age1…) first." });
      return;
    }
    // A secret key is never sent to the hub, not even to be refused there.
    if (/AGE-SECRET-KEY-/i.test(text)) {
      setDraft("");
      setError({
        where: "add",
        text: "That is a secret key (AGE-SECRET-KEY-…): never paste a secret key here, it alone opens the clips. It was not sent to the hub. Paste its public key (age1…) instead.",
      });
      return;
    }
    if (list.recipients.includes(text)) {
      setError({ where: "add", text: `${short(text)} is already in the list.` });
      return;
    }
    if (await save([...list.recipients, text], "add", (n) => `Added ${short(text)}: ${to(n)}.`)) setDraft("");
  }

  async function makeKey() {
    setMaking(true);
    setError(null);
    setStatus(null);
    try {
      // X25519 explicitly: the hub takes only age1… recipients, and generateIdentity() may
      // one day make a post-quantum one.
      const secret = await age.generateX25519Identity();
      const recipient = await age.identityToRecipient(secret);
      // age-keygen's layout and its RFC 3339 time in whole seconds.
      const created = new Date().toISOString().replace(/\.\d+Z$/, "Z");
      const text = `# created: ${created} by homehub in this browser\n# public key: ${recipient}\n${secret}\n`;
      forget();
      url.current = URL.createObjectURL(new Blob([text], { type: "text/plain" }));
      setKey({ recipient, url: url.current });
    } catch (e) {
      setError({ where: "key", text: `Cannot make a key in this browser: ${errorText(e)}` });
    } finally {
      setMaking(false);
    }
  }

  async function addKey() {
    if (!list || !key) return;
    const r = key.recipient;
    const next = list.recipients.includes(r) ? list.recipients : [...list.recipients, r];
    const ok = await save(next, "key", (n) => `Added ${short(r)}, the key made in this browser: ${to(n)}. This page has forgotten its secret: keep ${KEY_FILE} safe, offline.`);
    if (ok) {
      forget();
      heading.current?.focus();
    }
  }

  const shown = list ? list.recipients : fallback;
  const alert = (where: Where) =>
    error?.where === where && (
      <p role="alert" class="error" id={`recipients-${where}-error`}>
        {error.text}
      </p>
    );

  return (
    <section aria-labelledby="recipients-title" class="recipients-edit">
      <h2 id="recipients-title" ref={heading} tabIndex={-1}>
        Who can open the clips
      </h2>
      <p>
        Every object is encrypted (age) to these public keys. Only whoever holds a matching private key can open a clip; the storage provider holds none of them.
      </p>
      {loadError && (
        <p role="alert" class="error">
          {loadError}
        </p>
      )}
      {shown === undefined ? (
        <p>Not known just now.</p>
      ) : shown.length === 0 ? (
        <p>No recipients are set.</p>
      ) : (
        <ul class="plain recipients" data-testid="recipients">
          {shown.map((r) => (
            <li key={r} class="recipient-row">
              <code class="key">{r}</code>
              {list && (
                <button type="button" aria-label={`Remove recipient ${short(r)}`} onClick={() => void remove(r)} disabled={busy || list.recipients.length <= 1}>
                  Remove
                </button>
              )}
            </li>
          ))}
        </ul>
      )}
      {list && (
        <p class="small">
          {list.from === "hub" ? (
            <>
              Set here, in the browser: this list overrides the config file's <code>[cloud] recipients</code>.
            </>
          ) : (
            <>
              From the config file's <code>[cloud] recipients</code>. A change here overrides it.
            </>
          )}
          {list.recipients.length <= 1 && " The last recipient cannot be removed: add another first."} A change applies to new clips at once; what is already in the bucket
          stays as it was.
        </p>
      )}
      {alert("list")}
      <p role="status" class="ok">
        {status}
      </p>

      {list && (
        <>
          <h3 id="add-recipient-title">Add a recipient</h3>
          <form class="card form" aria-labelledby="add-recipient-title" onSubmit={(e) => void add(e)} noValidate>
            <label>
              Recipient (age1…)
              <input
                name="recipient"
                value={draft}
                onInput={(e) => setDraft(e.currentTarget.value)}
                autocomplete="off"
                autocapitalize="none"
                spellcheck={false}
                aria-invalid={error?.where === "add" ? true : undefined}
                aria-describedby={error?.where === "add" ? "recipients-add-error" : "recipient-help"}
              />
            </label>
            <p id="recipient-help" class="small">
              A public key, as <code>age-keygen</code> or <code>homehub keys new</code> prints it after “public key:”.
            </p>
            {alert("add")}
            <div class="buttons">
              <button type="submit" disabled={busy}>
                Add
              </button>
            </div>
          </form>

          <h3 id="new-key-title">Create a key in this browser</h3>
          <div class="card form">
            <p>The key is made here, in this browser: its secret part never goes to the hub, only into the file you download, and the hub gets only its public part.</p>
            {!key ? (
              <div class="buttons">
                <button type="button" onClick={() => void makeKey()} disabled={making || busy}>
                  {making ? "Creating a key…" : "Create a key in this browser"}
                </button>
              </div>
            ) : (
              <div ref={panel} class="new-key" role="group" aria-labelledby="new-key-made" tabIndex={-1}>
                <p id="new-key-made">
                  <strong>A new key, not added yet.</strong> Its public part:
                </p>
                <p>
                  <code class="key" data-testid="new-recipient">
                    {key.recipient}
                  </code>
                </p>
                <p class="small">
                  Download the key first and keep the file offline: it alone opens the clips encrypted to this key, and this page forgets the secret once the key is
                  added.
                </p>
                <div class="buttons">
                  <a class="button" href={key.url} download={KEY_FILE} data-testid="download-key">
                    Download the key
                  </a>
                  <button type="button" class="primary" onClick={() => void addKey()} disabled={busy}>
                    Add this key's public part
                  </button>
                  <button type="button" onClick={forget} disabled={busy}>
                    Discard this key
                  </button>
                </div>
              </div>
            )}
            {alert("key")}
          </div>
        </>
      )}
    </section>
  );
}

function count(n: number | undefined): string {
  return typeof n === "number" && Number.isFinite(n) ? n.toLocaleString() : "—";
}

/** The settings a form starts from: the ones in use, or an empty S3 store. */
function fieldsOf(s: CloudSettings | null): StoreFields {
  return {
    store: s?.store ?? "",
    endpoint: s?.endpoint ?? "",
    region: s?.region || "us-east-1",
    access_key_id: s?.access_key_id ?? "",
    secret_access_key: null,
  };
}

/** The store: what is in use (never the secret), with change, test and switching off; or the form to set one. */
function StoreSection({ again }: { again: () => void }) {
  const [s, setS] = useState<CloudSettings | null>(null);
  const [loadError, setLoadError] = useState<string | null>(null);
  const [editing, setEditing] = useState(false);
  const [confirmOff, setConfirmOff] = useState(false);
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<string | null>(null);

  useEffect(() => {
    let gone = false;
    getCloudSettings()
      .then((r) => !gone && setS(r))
      .catch((e) => !gone && setLoadError(`Cannot ask the hub for the store's settings: ${errorText(e)}`));
    return () => {
      gone = true;
    };
  }, []);

  async function off() {
    if (!s) return;
    setBusy(true);
    setError(null);
    try {
      await setCloudSettings({ ...fieldsOf(s), store: "" });
      again();
    } catch (e) {
      setError(`Cannot switch the cloud off: ${errorText(e)}`);
    } finally {
      setBusy(false);
    }
  }

  return (
    <section aria-labelledby="store-title" class="store-settings">
      <h2 id="store-title">{s?.active ? "The store" : "Where the clips go"}</h2>
      {loadError && (
        <p role="alert" class="error">
          {loadError}
        </p>
      )}
      {s?.error && (
        <p role="alert" class="error" data-testid="store-error">
          The store cannot be used: {s.error}
        </p>
      )}
      {s && s.active && !editing && (
        <div class="card">
          <dl class="facts">
            <div>
              <dt>Access key ID</dt>
              <dd>{s.access_key_id ? <code>{s.access_key_id}</code> : "— (from the AWS environment variables)"}</dd>
            </div>
            <div>
              <dt>Secret access key</dt>
              <dd>{s.secret_set ? "Kept on the hub, sealed; never shown" : "None set"}</dd>
            </div>
          </dl>
          <p class="small">
            {s.from === "hub" ? "Set here, in the browser: these settings override the config file's [cloud] store." : "From the config file's [cloud] section. Saving here overrides it."}
          </p>
          {!confirmOff ? (
            <div class="buttons">
              <button type="button" onClick={() => setEditing(true)}>
                Change the store
              </button>
              <button type="button" onClick={() => setConfirmOff(true)}>
                Switch the cloud off
              </button>
            </div>
          ) : (
            <div class="confirm" role="group" aria-labelledby="off-question">
              <p id="off-question">
                <strong>Switch the cloud off?</strong> Nothing more leaves the house; uploads already queued wait until a store is set again. What is in the bucket stays there.
              </p>
              <div class="buttons">
                <button type="button" class="danger" onClick={() => void off()} disabled={busy}>
                  {busy ? "Switching off…" : "Yes, switch it off"}
                </button>
                <button type="button" onClick={() => setConfirmOff(false)} disabled={busy}>
                  Keep it on
                </button>
              </div>
            </div>
          )}
          {error && (
            <p role="alert" class="error">
              {error}
            </p>
          )}
        </div>
      )}
      {s && (!s.active || editing) && (
        <StoreForm initial={s} onSaved={again} onCancel={s.active ? () => setEditing(false) : undefined} />
      )}
    </section>
  );
}

/** Store settings: tested before they are saved; saved, they are in use at once. */
function StoreForm({ initial, onSaved, onCancel }: { initial: CloudSettings; onSaved: () => void; onCancel?: () => void }) {
  const [f, setF] = useState<StoreFields>(fieldsOf(initial));
  const [secret, setSecret] = useState("");
  const [busy, setBusy] = useState<"test" | "save" | null>(null);
  const [ok, setOk] = useState<string | null>(null);
  const [error, setError] = useState<string | null>(null);
  const set = (k: keyof StoreFields) => (e: Event) => setF({ ...f, [k]: (e.currentTarget as HTMLInputElement).value });
  const fields = (): StoreFields => ({
    store: f.store.trim(),
    endpoint: f.endpoint.trim(),
    region: f.region.trim() || "us-east-1",
    access_key_id: f.access_key_id.trim(),
    // Left empty with one kept: keep it.
    secret_access_key: secret === "" && initial.secret_set ? null : secret,
  });

  async function test() {
    setBusy("test");
    setOk(null);
    setError(null);
    try {
      const r = await testCloudStore(fields());
      setOk(`The store works: an encrypted probe was written and deleted in ${Math.round(r.ms)} ms. Nothing is saved yet.`);
    } catch (e) {
      setError(`The store does not work: ${errorText(e)}`);
    } finally {
      setBusy(null);
    }
  }

  async function save(e: Event) {
    e.preventDefault();
    setBusy("save");
    setOk(null);
    setError(null);
    try {
      await setCloudSettings(fields());
      setSecret("");
      onSaved();
    } catch (err) {
      setError(`Not saved: ${errorText(err)}`);
    } finally {
      setBusy(null);
    }
  }

  return (
    <form class="card form store-form" aria-label="The store's settings" onSubmit={(e) => void save(e)} noValidate>
      {initial.from === "config" && (
        <p class="small">These come from the config file's [cloud] section; saving here overrides them from then on.</p>
      )}
      <label>
        Store
        <input name="store" value={f.store} onInput={set("store")} placeholder="s3://my-bucket/home" autocomplete="off" autocapitalize="none" spellcheck={false} aria-describedby="store-help" />
      </label>
      <p id="store-help" class="small">
        <code>s3://bucket/folder</code> for an S3-compatible bucket, or <code>file:///folder</code> for a disk.
      </p>
      <label>
        Endpoint
        <input name="endpoint" value={f.endpoint} onInput={set("endpoint")} placeholder="https://s3.example.net" autocomplete="off" autocapitalize="none" spellcheck={false} aria-describedby="endpoint-help" />
      </label>
      <p id="endpoint-help" class="small">
        The S3 server's address (MinIO, Garage, Backblaze, Wasabi…); leave empty for Amazon S3.
      </p>
      <label>
        Region
        <input name="region" value={f.region} onInput={set("region")} autocomplete="off" autocapitalize="none" spellcheck={false} />
      </label>
      <label>
        Access key ID
        <input name="access_key_id" value={f.access_key_id} onInput={set("access_key_id")} autocomplete="off" autocapitalize="none" spellcheck={false} />
      </label>
      <label>
        Secret access key
        <input
          name="secret_access_key"
          type="password"
          value={secret}
          onInput={(e) => setSecret(e.currentTarget.value)}
          autocomplete="new-password"
          placeholder={initial.secret_set ? "kept — leave empty to keep it" : ""}
          aria-describedby="secret-help"
        />
      </label>
      <p id="secret-help" class="small">
        Kept on the hub only sealed, never shown again. The key needs only to write objects (see the README for a policy).
      </p>
      <div class="buttons">
        <button type="button" onClick={() => void test()} disabled={busy !== null}>
          {busy === "test" ? "Testing…" : "Test these settings"}
        </button>
        <button type="submit" class="primary" disabled={busy !== null}>
          {busy === "save" ? "Saving…" : initial.active ? "Save" : "Save and start"}
        </button>
        {onCancel && (
          <button type="button" onClick={onCancel} disabled={busy !== null}>
            Cancel
          </button>
        )}
      </div>
      {error && (
        <p role="alert" class="error" data-testid="store-form-result">
          {error}
        </p>
      )}
      <p role="status" class="ok" data-testid={ok ? "store-form-result" : undefined}>
        {ok}
      </p>
    </form>
  );
}

/** The upload queue, read every 2 s while the page is open. */
function Queue() {
  const [q, setQ] = useState<CloudQueue | null>(null);
  const [error, setError] = useState<string | null>(null);

  useEffect(() => {
    let gone = false;
    let timer = 0;
    const tick = async () => {
      try {
        const r = await getCloudQueue();
        if (gone) return;
        setQ(r);
        setError(null);
      } catch (e) {
        if (!gone) setError(`Cannot read the queue: ${errorText(e)}`);
      }
      if (!gone) timer = window.setTimeout(() => void tick(), 2000);
    };
    void tick();
    return () => {
      gone = true;
      window.clearTimeout(timer);
    };
  }, []);

  const sent = q?.bytes_sent_since_start ?? 0;
  const total = sent + (q?.bytes_pending ?? 0);
  return (
    <section aria-labelledby="queue-title">
      <h2 id="queue-title">Uploads</h2>
      {error && (
        <p role="alert" class="error">
          {error}
        </p>
      )}
      {q && (
        <div class="card" data-testid="queue">
          <p>
            {q.queue_length === 0 ? "Nothing is waiting: everything is up." : `${plural(q.queue_length, "upload", "uploads")} waiting, ${bytes(q.bytes_pending)}.`}
          </p>
          <label class="progress-label">
            Sent since the hub started: {bytes(sent)} of {bytes(total)}
            <progress max={Math.max(total, 1)} value={total === 0 ? 1 : sent} />
          </label>
          <dl class="facts">
            <div>
              <dt>Sending now</dt>
              <dd>{q.sending ? `${kindName(q.sending.kind)}, ${bytes(q.sending.bytes)}` : "Nothing"}</dd>
            </div>
            <div>
              <dt>Last upload</dt>
              <dd data-testid="last-upload">
                {q.last_upload ? (
                  <>
                    {kindName(q.last_upload.kind)}, {bytes(q.last_upload.bytes)}, <time dateTime={q.last_upload.at}>{dateTime(q.last_upload.at)}</time>
                  </>
                ) : (
                  "None since the hub started"
                )}
              </dd>
            </div>
            <div>
              <dt>The store</dt>
              <dd>{q.reachable === false ? "Unreachable: uploads are retried" : "Reachable"}</dd>
            </div>
            {(q.failed ?? 0) > 0 && (
              <div>
                <dt>Given up</dt>
                <dd>{plural(q.failed ?? 0, "upload whose file was deleted first", "uploads whose files were deleted first")}</dd>
              </div>
            )}
          </dl>
          {q.last_error && q.reachable === false && (
            <p class="error small">
              Last error{q.last_error_at ? <> (<time dateTime={q.last_error_at}>{dateTime(q.last_error_at)}</time>)</> : null}: {q.last_error}
            </p>
          )}
        </div>
      )}
    </section>
  );
}

function kindName(k: string): string {
  return k === "clip" ? "A clip" : k === "piece" ? "A piece of an event" : k === "index" ? "An index entry" : k;
}

/** The away page: downloaded, or put in the bucket with a link that opens it for a week. */
function Away() {
  const [busy, setBusy] = useState(false);
  const [page, setPage] = useState<AwayPage | null>(null);
  const [error, setError] = useState<string | null>(null);

  async function put() {
    setBusy(true);
    setError(null);
    try {
      setPage(await putAwayPage());
    } catch (e) {
      setError(`Cannot put the page in the bucket: ${errorText(e)}`);
    } finally {
      setBusy(false);
    }
  }

  return (
    <section aria-labelledby="away-title">
      <h2 id="away-title">Watching from away</h2>
      <div class="card">
        <p>
          The away page lists and plays the clips straight from the bucket, decrypting them in your browser with your key file. The hub stays unreachable from the internet. The page is
          the same for every hub and holds no data; give it a read-only key for the bucket and your identity.
        </p>
        <div class="buttons">
          <a class="button" href={AWAY_PAGE_URL} download="homehub-away.html">
            Download the away page
          </a>
          <button type="button" onClick={() => void put()} disabled={busy}>
            {busy ? "Putting it in the bucket…" : "Put the away page in the bucket"}
          </button>
        </div>
        {error && (
          <p role="alert" class="error">
            {error}
          </p>
        )}
        <div role="status">
          {page && (
            <p class="ok-text">
              In the bucket as <code>{page.key}</code>. Open it from anywhere with{" "}
              <a href={page.url} data-testid="away-url" rel="noreferrer" target="_blank">
                this link
              </a>
              {page.expires ? (
                <>
                  {" "}
                  (it works until <time dateTime={page.expires}>{dateTime(page.expires)}</time>; put the page again for a new one)
                </>
              ) : null}
              .
            </p>
          )}
        </div>
      </div>
    </section>
  );
}
