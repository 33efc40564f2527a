// The away page: lists and plays the hub's clips straight from the bucket, decrypting in
// this browser with the owner's age identity, so the hub never has to be reachable from
// the internet. One self-contained file, the same for every hub, with no data in it; it
// talks to the bucket only. Nothing is stored but the bucket URL, region and access key
// id (never the secret key or the identity).
import * as age from "age-encryption";
import { type Bucket, type S3Object, getObject, listAll, parseBucketUrl } from "./s3";

/** Objects up to this size are read to find the index (index objects are a few KiB). */
const INDEX_MAX = 256 * 1024;
const PARALLEL = 6;
const REMEMBER = "homehub-away";

interface Entry {
  id: string;
  camera: string;
  start: string;
  end: string;
  bytes: number;
  kind?: string;
  event?: string;
  seq?: number;
}

const $ = <T extends HTMLElement>(id: string) => document.getElementById(id) as T;
const form = $<HTMLFormElement>("open");
const bucketInput = $<HTMLInputElement>("bucket");
const regionInput = $<HTMLInputElement>("region");
const keyIdInput = $<HTMLInputElement>("key-id");
const secretInput = $<HTMLInputElement>("secret");
const identityText = $<HTMLTextAreaElement>("identity");
const identityFile = $<HTMLInputElement>("identity-file");
const statusEl = $("status");
const errorEl = $("error");
const clipsSection = $("clips");
const list = $<HTMLUListElement>("clip-list");
const summary = $("summary");
const player = $("player");
const video = $<HTMLVideoElement>("video");
const playing = $("playing");
const openButton = $<HTMLButtonElement>("open-button");

let bucket: Bucket | null = null;
let identity = "";
let blobUrl: string | null = null;

function say(text: string) {
  statusEl.textContent = text;
}

function fail(text: string | null) {
  errorEl.textContent = text ?? "";
  errorEl.hidden = !text;
}

function bytes(n: number): string {
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(0)} KiB`;
  return `${(n / 1024 / 1024).toFixed(1)} MiB`;
}

function when(iso: string): string {
  const d = new Date(iso);
  return Number.isNaN(d.getTime()) ? iso : d.toLocaleString(undefined, { dateStyle: "medium", timeStyle: "medium" });
}

function seconds(e: Entry): string {
  const s = (Date.parse(e.end) - Date.parse(e.start)) / 1000;
  return Number.isFinite(s) && s >= 0 ? `${Math.round(s)} s` : "";
}

/** The AGE-SECRET-KEY line of a key file (age-keygen's layout: comments, then the key). */
function identityOf(text: string): string {
  const line = text
    .split(/\r?\n/)
    .map((l) => l.trim())
    .find((l) => l.toUpperCase().startsWith("AGE-SECRET-KEY-1"));
  if (!line) throw new Error("No identity given: paste the AGE-SECRET-KEY-1… line, or choose your key file.");
  return line.toUpperCase();
}

async function decrypt(data: Uint8Array): Promise<Uint8Array> {
  const d = new age.Decrypter();
  d.addIdentity(identity);
  return d.decrypt(data, "uint8array");
}

/** Runs `work` on every item, `PARALLEL` at a time. */
async function each<T>(items: T[], work: (item: T) => Promise<void>) {
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const item = items[next++];
      await work(item);
    }
  };
  await Promise.all(Array.from({ length: Math.min(PARALLEL, items.length) }, worker));
}

function remember() {
  try {
    localStorage.setItem(REMEMBER, JSON.stringify({ bucket: bucketInput.value, region: regionInput.value, keyId: keyIdInput.value }));
  } catch {
    // Private mode: nothing kept, nothing lost.
  }
}

function recall() {
  try {
    const r = JSON.parse(localStorage.getItem(REMEMBER) ?? "null");
    if (r && typeof r === "object") {
      if (!bucketInput.value && typeof r.bucket === "string") bucketInput.value = r.bucket;
      if (typeof r.region === "string" && r.region) regionInput.value = r.region;
      if (typeof r.keyId === "string") keyIdInput.value = r.keyId;
    }
  } catch {
    // Nothing kept.
  }
}

async function open(ev: Event) {
  ev.preventDefault();
  fail(null);
  clipsSection.hidden = true;
  list.replaceChildren();
  // A new bucket or key: what played before goes.
  video.pause();
  video.removeAttribute("src");
  video.load();
  player.hidden = true;
  if (blobUrl) URL.revokeObjectURL(blobUrl);
  blobUrl = null;
  openButton.disabled = true;
  try {
    let text = identityText.value;
    const file = identityFile.files?.[0];
    if (!text.trim() && file) text = await file.text();
    identity = identityOf(text);
    bucket = parseBucketUrl(bucketInput.value, regionInput.value.trim() || "us-east-1", keyIdInput.value.trim(), secretInput.value);
    remember();
    say("Listing the bucket…");
    const all = await listAll(bucket, (n) => say(`Listing the bucket: ${n} objects so far…`));
    const ours = all.filter((o) => /^[0-9a-f]{32}$/.test(o.key.split("/").pop() ?? ""));
    const small = ours.filter((o) => o.size <= INDEX_MAX);
    const keys = new Map<string, S3Object>(ours.map((o) => [o.key.split("/").pop() as string, o]));
    const entries = new Map<string, Entry>();
    let read = 0;
    let opened = 0;
    await each(small, async (o) => {
      try {
        const plain = await decrypt(await getObject(bucket as Bucket, o.key));
        opened++;
        if (plain[0] === 0x7b) {
          for (const line of new TextDecoder().decode(plain).split("\n")) {
            if (!line.trim()) continue;
            const e = JSON.parse(line) as Entry;
            if (typeof e.id === "string") entries.set(e.id, e);
          }
        }
      } catch (e) {
        // Not ours to open (another key, another file); a broken network says so below.
        if (e instanceof Error && e.message.startsWith("Cannot reach")) throw e;
      }
      read++;
      say(`Reading the index: ${read} of ${small.length}`);
    });
    if (opened === 0 && ours.length > 0) {
      throw new Error(`This key opens none of the ${ours.length} objects in the bucket: is it the right identity?`);
    }
    const clips = [...entries.values()]
      .filter((e) => (e.kind ?? "clip") === "clip" && keys.has(e.id))
      .sort((a, b) => Date.parse(b.start) - Date.parse(a.start));
    const pieces = [...entries.values()].filter((e) => e.kind === "piece").length;
    show(clips, keys, all.length - ours.length, pieces);
    say(clips.length ? `${clips.length} clip${clips.length === 1 ? "" : "s"}` : "No clips yet.");
  } catch (e) {
    fail(e instanceof Error ? e.message : String(e));
    say("");
  } finally {
    openButton.disabled = false;
  }
}

function show(clips: Entry[], keys: Map<string, S3Object>, others: number, pieces: number) {
  clipsSection.hidden = false;
  const notes = [`${clips.length} clip${clips.length === 1 ? "" : "s"}`];
  if (pieces) notes.push(`${pieces} piece${pieces === 1 ? "" : "s"} of events in progress (not listed)`);
  if (others) notes.push(`${others} other file${others === 1 ? "" : "s"} skipped`);
  summary.textContent = `${notes.join(", ")}.`;
  for (const e of clips) {
    const o = keys.get(e.id) as S3Object;
    const li = document.createElement("li");
    li.className = "clip";
    li.dataset.testid = "clip";
    const title = document.createElement("div");
    title.className = "clip-title";
    const cam = document.createElement("strong");
    cam.textContent = e.camera;
    const at = document.createElement("span");
    at.textContent = ` ${when(e.start)}`;
    title.append(cam, at);
    const meta = document.createElement("div");
    meta.className = "clip-meta";
    meta.textContent = [seconds(e), bytes(e.bytes)].filter(Boolean).join(" · ");
    const play = document.createElement("button");
    play.type = "button";
    play.textContent = "Play";
    play.setAttribute("aria-label", `Play ${e.camera} at ${when(e.start)}`);
    play.addEventListener("click", () => void fetchClip(e, o, play, false));
    const save = document.createElement("button");
    save.type = "button";
    save.className = "secondary";
    save.textContent = "Download";
    save.setAttribute("aria-label", `Download ${e.camera} at ${when(e.start)}`);
    save.addEventListener("click", () => void fetchClip(e, o, save, true));
    const buttons = document.createElement("div");
    buttons.className = "clip-buttons";
    buttons.append(play, save);
    li.append(title, meta, buttons);
    list.append(li);
  }
}

async function fetchClip(e: Entry, o: S3Object, button: HTMLButtonElement, download: boolean) {
  if (!bucket) return;
  fail(null);
  const label = button.textContent;
  button.disabled = true;
  button.textContent = "Opening…";
  try {
    say(`Fetching ${bytes(o.size)} and decrypting…`);
    const plain = await decrypt(await getObject(bucket, o.key));
    if (blobUrl) URL.revokeObjectURL(blobUrl);
    blobUrl = URL.createObjectURL(new Blob([plain as BlobPart], { type: "video/mp4" }));
    if (download) {
      const a = document.createElement("a");
      a.href = blobUrl;
      a.download = `${e.camera.replace(/[^\w.-]+/g, "_")}-${e.start.replace(/[:]/g, "")}.mp4`;
      document.body.append(a);
      a.click();
      a.remove();
      say("Downloaded.");
    } else {
      player.hidden = false;
      playing.textContent = `${e.camera}, ${when(e.start)}`;
      video.src = blobUrl;
      await video.play().catch(() => {});
      video.focus();
      say(`Playing ${e.camera}, ${when(e.start)}`);
    }
  } catch (err) {
    fail(`Cannot open this clip: ${err instanceof Error ? err.message : String(err)}`);
    say("");
  } finally {
    button.disabled = false;
    button.textContent = label;
  }
}

// Opened from the bucket itself: the bucket URL is the folder this page is in.
if (location.protocol === "https:" || location.protocol === "http:") {
  bucketInput.value = location.href.replace(/[?#].*$/, "").replace(/\/[^/]*$/, "");
}
recall();
identityFile.addEventListener("change", () => {
  if (identityFile.files?.length) identityText.value = "";
});
form.addEventListener("submit", (ev) => void open(ev));
