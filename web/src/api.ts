// The hub's JSON API (api11.md, api13.md for people, 2FA, sessions, audit, api13b.md for
// what leaves the house and the local insight, api13c.md for the cloud's recipients and the
// store's test, api13d.md for the store's settings, the queue and the away page), typed. Every
// call goes through `api()`, which turns an error answer into an `ApiError` whose message
// is the server's own words.

export type Role = "viewer" | "member" | "owner";
export type RecordingMode = "continuous" | "events" | "off";

/** A user's id as the hub gives it (compare with `sameId`). */
export type UserId = number | string;

export interface Me {
  id: UserId;
  email: string;
  role: Role;
  /** This user has two-factor authentication on. */
  totp: boolean;
  /** The owner requires two-factor authentication for everyone. */
  require_totp: boolean;
  /** Two-factor is required and this user has none: only the Account page's enrolment works. */
  must_enrol: boolean;
}

export interface Camera {
  id: number;
  name: string;
  status: "streaming" | "connecting" | "error" | "stopped";
  reason: string | null;
  decoder: string | null;
  hardware_decoder?: boolean;
  decoded_fps: number;
  source: "config" | "paired" | "added";
  motion: boolean;
  url?: string;
  has_substream?: boolean;
  recording_mode?: RecordingMode;
  recording_mode_override?: RecordingMode | null;
  transport?: "tcp" | "udp" | null;
  fps?: number | null;
  bitrate_kbps?: number | null;
  width?: number | null;
  height?: number | null;
  storage_bytes?: number | null;
  editable?: boolean;
  snapshot_url?: string;
  live_url?: string;
}

export interface Zone {
  name: string;
  kind: "include" | "exclude";
  points: [number, number][];
}

export interface MotionConfig {
  sensitivity: number;
  zones: Zone[];
  start_frames: number;
  end_frames: number;
}

export interface Probe {
  codec: string;
  width: number;
  height: number;
  fps: number;
  transport: "tcp" | "udp";
}

export interface HubEvent {
  id: number;
  camera_id: number;
  start: string;
  end: string | null;
  score: number;
  clip_url: string | null;
  thumbnail_url: string | null;
}

export interface Span {
  camera_id: number;
  start: string;
  end: string;
}

export interface Page<T> {
  items: T[];
  next?: string | null;
}

export interface Pending {
  device_id: string;
  /** Names this request when several compete for one device id. */
  request_id: string;
  kind: string;
  model: string;
  firmware: string;
  /** The address the request came from. */
  peer: string;
  received: string;
  expires: string;
  /** Another connection asks for the same device id. */
  competing: boolean;
}

export interface Device {
  id: string;
  kind: string;
  model: string;
  firmware: string;
  paired: boolean;
  paired_at: string;
  last_seen: string | null;
  availability: string;
  camera_id: number | null;
}

export interface Candidate {
  kind: "device" | "rtsp";
  instance: string;
  addresses: string[];
  port: number;
  txt: Record<string, string>;
}

export interface Storage {
  total_bytes: number;
  free_bytes: number;
  used_bytes: number;
  cameras: { camera_id: number; name: string; bytes: number; recordings_bytes: number; clips_bytes: number }[];
  write_bytes_per_day: number;
  retain_days: number;
  forecast_days: number | null;
}

export class ApiError extends Error {
  constructor(
    readonly status: number,
    message: string,
    /** The error answer's JSON object (`error` and any flags such as `totp_required`). */
    readonly body: Record<string, unknown> = {},
  ) {
    super(message);
  }
}

/** Called when any request answers 401: the session is gone, show sign-in. */
let onUnauthenticated: () => void = () => {};
export function setUnauthenticatedHandler(f: () => void): void {
  onUnauthenticated = f;
}

/** Called when a request answers 403 with `must_enrol`: the owner now requires 2FA of this user. */
let onMustEnrol: () => void = () => {};
export function setMustEnrolHandler(f: () => void): void {
  onMustEnrol = f;
}

const TIMEOUT_MS = 20_000;

export async function api<T>(method: string, path: string, body?: unknown): Promise<T> {
  const ctl = new AbortController();
  const timer = setTimeout(() => ctl.abort(), TIMEOUT_MS);
  let res: Response;
  try {
    res = await fetch(path, {
      method,
      credentials: "same-origin",
      // Every state-changing request says it is JSON, body or not: the hub refuses any
      // other (CSRF: a form cannot send it).
      headers: method === "GET" || method === "HEAD" ? {} : { "content-type": "application/json" },
      body: body === undefined ? undefined : JSON.stringify(body),
      signal: ctl.signal,
    });
  } catch (e) {
    throw new ApiError(0, ctl.signal.aborted ? "the hub did not answer in time" : "the hub cannot be reached");
  } finally {
    clearTimeout(timer);
  }
  if (res.status === 204) return undefined as T;
  const text = await res.text();
  let json: unknown = undefined;
  try {
    json = text ? JSON.parse(text) : undefined;
  } catch {
    // not JSON: handled below
  }
  if (!res.ok) {
    const msg =
      json && typeof json === "object" && "error" in json && typeof json.error === "string"
        ? json.error
        : res.status === 404
          ? "this hub does not offer that yet (404)"
          : `the hub answered ${res.status}`;
    const obj = json && typeof json === "object" && !Array.isArray(json) ? (json as Record<string, unknown>) : {};
    if (res.status === 401 && path !== "/api/session") onUnauthenticated();
    if (res.status === 403 && obj.must_enrol === true) onMustEnrol();
    throw new ApiError(res.status, msg, obj);
  }
  return json as T;
}

export const get = <T>(path: string) => api<T>("GET", path);

/** Query string from the defined values. */
export function qs(params: Record<string, string | number | undefined | null>): string {
  const p = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== null && v !== "") p.set(k, String(v));
  const s = p.toString();
  return s ? `?${s}` : "";
}

/** The answer was a 401 of sign-in asking for the authentication code (or a wrong one). */
export function isTotpRequired(e: unknown): boolean {
  return e instanceof ApiError && e.body.totp_required === true;
}

export function errorText(e: unknown): string {
  if (e instanceof ApiError) return e.message;
  if (e instanceof Error) return e.message;
  return String(e);
}

/** The same user id, whether the hub sent a number or a string. */
export function sameId(a: UserId | null | undefined, b: UserId | null | undefined): boolean {
  return a !== null && a !== undefined && b !== null && b !== undefined && String(a) === String(b);
}

const enc = (id: UserId) => encodeURIComponent(String(id));

// ---- First run (no session needed) ----

export const getSetup = () => get<{ needed: boolean }>("/api/setup");

/** Creates the first owner with the setup token; the hub signs them in (sets the cookie). */
export const createOwner = (token: string, email: string, password: string) =>
  api<{ email: string; role: "owner" }>("POST", "/api/setup", { token, email, password });

// ---- Me, sign-in, two-factor ----

export const getMe = () => get<Me>("/api/me");

/** Signs in; without `totp` on an account with 2FA it fails with `isTotpRequired`. */
export function signIn(email: string, password: string, totp?: string): Promise<unknown> {
  return api("POST", "/api/session", totp === undefined ? { email, password } : { email, password, totp });
}

export const signOut = () => api<void>("DELETE", "/api/session");

/** Changes the password; the user's other sessions are signed out. */
export const changePassword = (current: string, next: string) => api<{ revoked: number }>("POST", "/api/me/password", { current, new: next });

export interface TotpEnrolment {
  /** BASE32, for typing into the app by hand. */
  secret: string;
  /** otpauth://totp/… */
  uri: string;
  /** The QR code of `uri` as SVG markup made by the hub. */
  qr_svg: string;
}

/** Starts enrolment (2FA is not on until `confirmTotp`). */
export const startTotp = () => api<TotpEnrolment>("POST", "/api/me/totp");

/** Turns 2FA on with a code from the app; the recovery codes are shown once. */
export const confirmTotp = (code: string) => api<{ recovery_codes: string[] }>("POST", "/api/me/totp/confirm", { code });

export const disableTotp = (password: string) => api<void>("POST", "/api/me/totp/disable", { password });

// ---- Sessions (the signed-in user's own) ----

export interface SessionInfo {
  id: string;
  /** The session of this browser. */
  current: boolean;
  created: string;
  last_seen: string;
  address: string;
  agent: string;
  expires: string;
}

export const getSessions = () => get<{ items: SessionInfo[] }>("/api/sessions");

/** Revokes one of the user's sessions (the current one signs this browser out). */
export const revokeSession = (id: string) => api<void>("DELETE", `/api/sessions/${encodeURIComponent(id)}`);

// ---- People (owner only) ----

export interface User {
  id: UserId;
  email: string;
  role: Role;
  totp: boolean;
  created: string;
  /** How many sessions the user has. */
  sessions: number;
  /** The camera ids shared with the user (`[]` for owners, who see every camera). */
  cameras: number[];
}

export const getUsers = () => get<{ items: User[] }>("/api/users");

export const addUser = (email: string, role: Role, password: string) => api<User>("POST", "/api/users", { email, role, password });

/** Changes the role and/or sets a new password (which signs the user out everywhere). */
export const updateUser = (id: UserId, patch: { role?: Role; password?: string }) => api<User>("PATCH", `/api/users/${enc(id)}`, patch);

/** Replaces the list of cameras shared with the user. */
export const shareCameras = (id: UserId, cameras: number[]) => api<User>("PUT", `/api/users/${enc(id)}/cameras`, { cameras });

export const removeUser = (id: UserId) => api<void>("DELETE", `/api/users/${enc(id)}`);

/** Signs the user out everywhere. */
export const revokeUserSessions = (id: UserId) => api<{ revoked: number }>("DELETE", `/api/users/${enc(id)}/sessions`);

// ---- Hub settings (owner only) ----

export interface Settings {
  require_totp: boolean;
}

export const getSettings = () => get<Settings>("/api/settings");

/** Refused (409) while the owner themselves has no 2FA. */
export const updateSettings = (patch: Partial<Settings>) => api<Settings>("PATCH", "/api/settings", patch);

// ---- Audit (owner only) ----

export type AuditId = number | string;

export interface AuditEntry {
  id: AuditId;
  at: string;
  actor: string;
  action: string;
  detail: unknown;
}

export interface AuditRollup {
  action: string;
  count: number;
  first: string;
  last: string;
}

export interface AuditPage {
  /** Newest first. */
  items: AuditEntry[];
  /** Goes into `before` for the next (older) page; null on the last. */
  next: AuditId | null;
  rolled_up: AuditRollup[];
  /** The distinct actions present, for the filter. */
  actions: string[];
}

export interface AuditQuery {
  /** An action prefix: "login" matches "login" and "login.failed". */
  action?: string;
  actor?: string;
  before?: AuditId | null;
  /** At most 200; 50 by default. */
  limit?: number;
}

export const getAudit = (q: AuditQuery) => get<AuditPage>(`/api/audit${qs({ action: q.action, actor: q.actor, before: q.before, limit: q.limit })}`);

// ---- Security (owner only) ----

/** One finding of the hub's self-check (`homehub doctor`), and how to fix it. */
export interface Finding {
  severity?: "warning" | "error";
  message: string;
  fix: string;
}

/** The findings of `homehub doctor`; none means all good. */
export const getDoctor = () => get<{ findings: Finding[] }>("/api/doctor");

export interface SignoutEverywhere {
  sessions: number;
  devices_rotated: string[];
  devices_offline: string[];
  broker_users: number;
}

/** Ends every browser session (the caller's too) and rotates the devices' credentials. */
export const signOutEverywhere = () => api<SignoutEverywhere>("POST", "/api/signout-everywhere", { confirm: "sign out everywhere" });

// ---- What leaves this house (owner only) ----

/** One object in the bucket, as the storage provider lists it. */
export interface ExposedObject {
  /** `<hub id>/<32 random hex>`: says nothing about the camera or the clip. */
  name: string;
  /** As stored: padded ciphertext, so only roughly the clip's size. */
  bytes: number;
  uploaded: string;
}

/** The cloud is set up. With `error` (the bucket could not be listed) the other fields may be absent. */
export interface CloudExposure {
  enabled: true;
  /** `s3://bucket/prefix` (no credentials). */
  store?: string;
  /** "" = Amazon S3. */
  endpoint?: string;
  region?: string;
  /** The only name the provider sees: random. */
  hub_id?: string;
  /** The age public keys every object is encrypted to. */
  recipients?: string[];
  /** Objects under this hub's prefix, counted from the bucket at `listed_at`. */
  objects?: number;
  bytes?: number;
  listed_at?: string;
  /** The listing stopped at 100 000 objects: there are more. */
  truncated?: boolean;
  /** The newest 50 objects. */
  recent?: ExposedObject[];
  uploads_since_start?: number;
  bytes_sent_since_start?: number;
  queue_length?: number;
  last_success?: string | null;
  error?: string | null;
}

export type Exposure = { enabled: false } | CloudExposure;

export const getExposure = () => get<Exposure>("/api/cloud/exposure");

/** Who can open the clips: the age X25519 recipients (`age1…`) new objects are encrypted to. */
export interface CloudRecipients {
  recipients: string[];
  /** `hub`: set from the browser, overriding the config's `[cloud] recipients`; `none`: none anywhere. */
  from: "config" | "hub" | "none";
}

/** Works with the cloud off too (set who can open the clips before the store). */
export const getCloudRecipients = () => get<CloudRecipients>("/api/cloud/recipients");

/** Where clips go: the store settings in use (never the secret). */
export interface CloudSettings {
  store: string;
  /** "" = Amazon S3. */
  endpoint: string;
  region: string;
  access_key_id: string;
  /** A secret access key is kept on the hub, sealed. */
  secret_set: boolean;
  /** `hub`: set in the browser, winning over the config's `[cloud]` store keys. */
  from: "config" | "hub" | "none";
  /** The relay sends with these now. */
  active: boolean;
  /** Why they could not be put to use. */
  error: string | null;
}

/** Store settings as sent: `secret_access_key` null keeps the one kept; `store` "" switches the cloud off. */
export interface StoreFields {
  store: string;
  endpoint: string;
  region: string;
  access_key_id: string;
  secret_access_key: string | null;
}

export const getCloudSettings = () => get<CloudSettings>("/api/cloud/settings");

/** In use at once; 409 with no recipients yet, 400 naming a bad field. */
export const setCloudSettings = (f: StoreFields) => api<CloudSettings>("PUT", "/api/cloud/settings", f);

/** The relay and its queue (`GET /api/cloud`). */
export interface CloudQueue {
  enabled: boolean;
  store?: string;
  queue_length: number;
  bytes_pending: number;
  failed?: number;
  uploaded?: number;
  bytes_sent_since_start?: number;
  uploads_since_start?: number;
  last_success?: string | null;
  last_error?: string | null;
  last_error_at?: string | null;
  reachable?: boolean;
  last_upload?: { kind: string; bytes: number; at: string } | null;
  sending?: { kind: string; bytes: number; since: string } | null;
}

export const getCloudQueue = () => get<CloudQueue>("/api/cloud");

/** The away page put in the bucket: `url` opens it for a week (presigned), `address` is its plain address. */
export interface AwayPage {
  key: string;
  address: string;
  url: string;
  expires: string | null;
}

export const putAwayPage = () => api<AwayPage>("POST", "/api/cloud/away", {});

/** The away page as a download (member or owner). */
export const AWAY_PAGE_URL = "/api/cloud/away.html";

/** At least one; a secret key is refused (400). New clips and pieces use the new list at once; what is in the bucket stays as it was. */
export const setCloudRecipients = (recipients: string[]) => api<CloudRecipients>("PUT", "/api/cloud/recipients", { recipients });

/** Writes one encrypted probe object and deletes it: to the store in use, or to the one `f` names (not saved); 502 with the reason when the store cannot be reached or refuses. */
export const testCloudStore = (f?: StoreFields) => api<{ ok: true; ms: number }>("POST", "/api/cloud/test", f ?? {});

// ---- Insight (owner only): figures from the hub's own database ----

export interface Insight {
  /** UTC dates (YYYY-MM-DD), oldest first; every `per_day` has one number per day. */
  days: string[];
  /** Motion events started each day, per camera. */
  motion: { camera_id: number; name: string; per_day: number[] }[];
  /** Media kept now, per camera. */
  storage: { camera_id: number; name: string; bytes: number }[];
  devices: { id: string; connections: number; failed_connections: number; paired: boolean }[];
  /** From the audit trail. */
  sign_ins: { per_day: number[]; failed_per_day: number[] };
}

/** At most 60 days. */
export const getInsight = (days: number) => get<Insight>(`/api/insight${qs({ days })}`);
