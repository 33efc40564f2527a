// The hub's JSON API (api11.md), typed. Every call goes through `api()`, which turns
// an error answer into an `ApiError` whose message is the server's own words.

export type Role = "viewer" | "member" | "owner";
export type RecordingMode = "continuous" | "events" | "off";

export interface Me {
  email: string;
  role: Role;
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
  ) {
    super(message);
  }
}

/** Called when any request answers 401: the session is gone, show sign-in. */
let onUnauthenticated: () => void = () => {};
export function setUnauthenticatedHandler(f: () => void): void {
  onUnauthenticated = f;
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
    if (res.status === 401 && path !== "/api/session") onUnauthenticated();
    throw new ApiError(res.status, msg);
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

export function errorText(e: unknown): string {
  if (e instanceof ApiError) return e.message;
  if (e instanceof Error) return e.message;
  return String(e);
}
