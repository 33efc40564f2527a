// S3 from the browser: AWS Signature V4 with WebCrypto, ListObjectsV2 and GetObject.
// Path-style (`https://endpoint/bucket/prefix`) or Amazon's virtual-hosted style
// (`https://bucket.s3.region.amazonaws.com/prefix`). Without an access key, requests go
// unsigned (a public-read bucket).

const EMPTY_SHA256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

export interface Bucket {
  /** URL of the bucket's root, no trailing slash: where keys are appended. */
  base: string;
  /** The folder inside the bucket, no leading or trailing slash ("" = the root). */
  prefix: string;
  region: string;
  accessKeyId: string;
  secretAccessKey: string;
}

/** Splits a bucket URL into the bucket's root and the folder in it. */
export function parseBucketUrl(text: string, region: string, accessKeyId: string, secretAccessKey: string): Bucket {
  let u: URL;
  try {
    u = new URL(text.trim());
  } catch {
    throw new Error("The bucket URL is not a URL: give it as https://endpoint/bucket/folder");
  }
  if (u.protocol !== "https:" && u.protocol !== "http:") throw new Error("The bucket URL must start with https:// (or http:// on a home network)");
  const parts = u.pathname.split("/").filter((p) => p !== "").map(decodeURIComponent);
  const virtual = /^(.+)\.s3[.-]([a-z0-9-]+\.)?amazonaws\.com$/.exec(u.hostname);
  if (virtual) {
    return { base: u.origin, prefix: parts.join("/"), region, accessKeyId, secretAccessKey };
  }
  if (parts.length === 0) throw new Error("The bucket URL names no bucket: give it as https://endpoint/bucket/folder");
  const [bucket, ...rest] = parts;
  return { base: `${u.origin}/${encodeSegment(bucket)}`, prefix: rest.join("/"), region, accessKeyId, secretAccessKey };
}

function encodeSegment(s: string): string {
  return encodeURIComponent(s).replace(/[!'()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`);
}

function encodeKey(key: string): string {
  return key.split("/").map(encodeSegment).join("/");
}

const enc = new TextEncoder();

function hex(buf: ArrayBuffer): string {
  return [...new Uint8Array(buf)].map((b) => b.toString(16).padStart(2, "0")).join("");
}

async function sha256(text: string): Promise<string> {
  return hex(await crypto.subtle.digest("SHA-256", enc.encode(text)));
}

async function hmac(key: ArrayBuffer, text: string): Promise<ArrayBuffer> {
  const k = await crypto.subtle.importKey("raw", key, { name: "HMAC", hash: "SHA-256" }, false, ["sign"]);
  return crypto.subtle.sign("HMAC", k, enc.encode(text));
}

/** The headers that sign a body-less request (SigV4, service s3). */
export async function signedHeaders(
  method: string,
  url: URL,
  region: string,
  accessKeyId: string,
  secretAccessKey: string,
  now: Date,
): Promise<Record<string, string>> {
  const amzDate = now.toISOString().replace(/[-:]/g, "").replace(/\.\d{3}/, "");
  const day = amzDate.slice(0, 8);
  const query = [...url.searchParams.entries()]
    .map(([k, v]) => [encodeSegment(k), encodeSegment(v)])
    .sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : a[1] < b[1] ? -1 : a[1] > b[1] ? 1 : 0))
    .map(([k, v]) => `${k}=${v}`)
    .join("&");
  const canonicalHeaders = `host:${url.host}\nx-amz-content-sha256:${EMPTY_SHA256}\nx-amz-date:${amzDate}\n`;
  const signed = "host;x-amz-content-sha256;x-amz-date";
  const request = [method, url.pathname || "/", query, canonicalHeaders, signed, EMPTY_SHA256].join("\n");
  const scope = `${day}/${region}/s3/aws4_request`;
  const toSign = ["AWS4-HMAC-SHA256", amzDate, scope, await sha256(request)].join("\n");
  let key = await hmac(enc.encode(`AWS4${secretAccessKey}`).buffer as ArrayBuffer, day);
  for (const part of [region, "s3", "aws4_request"]) key = await hmac(key, part);
  const signature = hex(await hmac(key, toSign));
  return {
    "x-amz-date": amzDate,
    "x-amz-content-sha256": EMPTY_SHA256,
    authorization: `AWS4-HMAC-SHA256 Credential=${accessKeyId}/${scope}, SignedHeaders=${signed}, Signature=${signature}`,
  };
}

/** A GET, signed when there is a key; an S3 error answer becomes an Error with its words. */
async function get(b: Bucket, url: URL): Promise<Response> {
  const headers = b.accessKeyId ? await signedHeaders("GET", url, b.region, b.accessKeyId, b.secretAccessKey, new Date()) : {};
  let r: Response;
  try {
    r = await fetch(url, { headers, credentials: "omit", cache: "no-store" });
  } catch {
    const cross = url.origin !== location.origin;
    throw new Error(
      cross
        ? `Cannot reach ${url.origin}. If the address is right, the bucket needs a CORS rule allowing GET from ${location.origin || "this page"}.`
        : `Cannot reach ${url.origin}.`,
    );
  }
  if (!r.ok) {
    const text = await r.text().catch(() => "");
    const doc = new DOMParser().parseFromString(text, "application/xml");
    const code = doc.querySelector("Code")?.textContent;
    const msg = doc.querySelector("Message")?.textContent;
    throw new Error(`The bucket answered ${r.status}${code ? ` ${code}` : ""}${msg ? `: ${msg}` : ""}`);
  }
  return r;
}

export interface S3Object {
  key: string;
  size: number;
}

/** Every object under the folder (ListObjectsV2, page by page). */
export async function listAll(b: Bucket, onPage: (n: number) => void): Promise<S3Object[]> {
  const out: S3Object[] = [];
  let token: string | null = null;
  for (let page = 0; page < 10_000; page++) {
    const url = new URL(`${b.base}/`);
    url.searchParams.set("list-type", "2");
    if (b.prefix) url.searchParams.set("prefix", `${b.prefix}/`);
    if (token) url.searchParams.set("continuation-token", token);
    const doc = new DOMParser().parseFromString(await (await get(b, url)).text(), "application/xml");
    for (const c of doc.querySelectorAll("Contents")) {
      const key = c.querySelector("Key")?.textContent ?? "";
      const size = Number(c.querySelector("Size")?.textContent ?? "0");
      if (key) out.push({ key, size });
    }
    onPage(out.length);
    const truncated = doc.querySelector("IsTruncated")?.textContent === "true";
    token = doc.querySelector("NextContinuationToken")?.textContent ?? null;
    if (!truncated || !token) break;
  }
  return out;
}

/** One object's bytes. */
export async function getObject(b: Bucket, key: string): Promise<Uint8Array> {
  const r = await get(b, new URL(`${b.base}/${encodeKey(key)}`));
  return new Uint8Array(await r.arrayBuffer());
}
