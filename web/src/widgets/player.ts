// The live player: WebSocket → MediaSource (ManagedMediaSource where MediaSource is
// missing, as on iOS Safari) → one SourceBuffer of the init message's mime type.
//
// The hub sends a text `init`, the binary init segment, then fragments starting with the
// cached GOP. We append in order through a queue, jump to the live edge after the first
// append and stay near it, free what lies behind the playhead, close the socket while
// the tab is hidden, and reconnect with backoff when the socket drops.

type MS = MediaSource;

interface MediaSourceCtor {
  new (): MS;
  isTypeSupported(type: string): boolean;
}

function mediaSourceCtor(): MediaSourceCtor | null {
  const w = window as unknown as { MediaSource?: MediaSourceCtor; ManagedMediaSource?: MediaSourceCtor };
  return w.MediaSource ?? w.ManagedMediaSource ?? null;
}

export function canPlayLive(): boolean {
  return mediaSourceCtor() !== null && typeof WebSocket !== "undefined";
}

export interface PlayerEvents {
  /** First decoded frame since `start()`, ms after it. */
  onFirstFrame?: (ms: number) => void;
  /** Human-readable state for the page ("Connecting…", an error from the hub). */
  onStatus?: (text: string | null) => void;
}

/** Seconds behind the buffered end we aim for, and the lag after which we jump. */
const EDGE_S = 0.3;
const MAX_LAG_S = 2.0;
/** Keep this much behind the playhead; trim when more has piled up. */
const KEEP_BEHIND_S = 10;
const TRIM_AT_S = 30;
/** A viewer this far behind (queued bytes) reconnects instead of buffering forever. */
const MAX_QUEUE_BYTES = 16 * 1024 * 1024;
const BACKOFF_MIN_MS = 500;
const BACKOFF_MAX_MS = 10_000;

export class LivePlayer {
  private ws: WebSocket | null = null;
  private ms: MS | null = null;
  private sb: SourceBuffer | null = null;
  private objectUrl: string | null = null;
  private queue: ArrayBuffer[] = [];
  private queued = 0;
  private mime: string | null = null;
  private appendedMedia = false;
  private backoff = BACKOFF_MIN_MS;
  private retryTimer: number | undefined;
  private stopped = true;
  private openedAt = 0;
  private firstFrameSeen = false;
  private readonly onVisibility = () => this.visibilityChanged();

  constructor(
    private readonly video: HTMLVideoElement,
    private readonly url: string,
    private readonly events: PlayerEvents = {},
  ) {
    video.muted = true;
    video.playsInline = true;
    video.autoplay = true;
  }

  start(): void {
    this.stopped = false;
    this.openedAt = performance.now();
    this.firstFrameSeen = false;
    document.addEventListener("visibilitychange", this.onVisibility);
    this.watchFirstFrame();
    this.connect();
  }

  stop(): void {
    this.stopped = true;
    document.removeEventListener("visibilitychange", this.onVisibility);
    clearTimeout(this.retryTimer);
    this.teardown();
  }

  private visibilityChanged(): void {
    if (this.stopped) return;
    if (document.hidden) {
      clearTimeout(this.retryTimer);
      this.teardown();
    } else if (!this.ws) {
      this.connect();
    }
  }

  private status(text: string | null): void {
    this.events.onStatus?.(text);
  }

  private connect(): void {
    const Ctor = mediaSourceCtor();
    if (!Ctor) {
      this.status("This browser cannot play live video (no Media Source Extensions).");
      return;
    }
    this.teardown();
    this.status("Connecting…");
    const proto = window.location.protocol === "https:" ? "wss:" : "ws:";
    const ws = new WebSocket(`${proto}//${window.location.host}${this.url}`);
    ws.binaryType = "arraybuffer";
    this.ws = ws;
    let gotInit = false;
    ws.onmessage = (m) => {
      if (this.ws !== ws) return;
      if (typeof m.data === "string") {
        let msg: { type?: string; mime?: string; error?: string };
        try {
          msg = JSON.parse(m.data);
        } catch {
          return;
        }
        if (msg.type === "init" && msg.mime) {
          gotInit = true;
          this.init(Ctor, msg.mime);
        } else if (msg.type === "error") {
          this.status(msg.error ?? "the live stream stopped");
        }
        return;
      }
      if (!gotInit) return;
      this.enqueue(m.data as ArrayBuffer);
    };
    ws.onclose = () => {
      if (this.ws !== ws) return;
      this.ws = null;
      this.scheduleRetry();
    };
  }

  private scheduleRetry(): void {
    if (this.stopped || document.hidden) return;
    clearTimeout(this.retryTimer);
    const wait = this.backoff;
    this.backoff = Math.min(this.backoff * 2, BACKOFF_MAX_MS);
    this.retryTimer = window.setTimeout(() => this.connect(), wait);
  }

  /** A new init message: a fresh MediaSource unless the same mime type goes on. */
  private init(Ctor: MediaSourceCtor, mime: string): void {
    if (!Ctor.isTypeSupported(mime)) {
      this.status(`This browser cannot play this camera's video (${mime}).`);
      this.ws?.close();
      return;
    }
    if (this.sb && this.mime === mime) return; // the init segment that follows is appended in order
    if (this.sb && "changeType" in this.sb && this.mime !== null) {
      this.sb.changeType(mime);
      this.mime = mime;
      return;
    }
    this.resetMedia();
    this.mime = mime;
    const ms = new Ctor();
    this.ms = ms;
    ms.addEventListener(
      "sourceopen",
      () => {
        if (this.ms !== ms) return;
        try {
          const sb = ms.addSourceBuffer(mime);
          sb.mode = "segments";
          sb.addEventListener("updateend", () => this.afterAppend());
          this.sb = sb;
          this.pump();
        } catch (e) {
          this.status(`Cannot play this video: ${e instanceof Error ? e.message : String(e)}`);
        }
      },
      { once: true },
    );
    // ManagedMediaSource plays only with remote playback off (Safari's rule).
    (this.video as HTMLVideoElement & { disableRemotePlayback: boolean }).disableRemotePlayback = true;
    this.objectUrl = URL.createObjectURL(ms);
    this.video.src = this.objectUrl;
  }

  private enqueue(buf: ArrayBuffer): void {
    this.queue.push(buf);
    this.queued += buf.byteLength;
    if (this.queued > MAX_QUEUE_BYTES) {
      // Too far behind to catch up: start again from the hub's latest keyframe.
      this.ws?.close();
      return;
    }
    this.pump();
  }

  private pump(): void {
    const sb = this.sb;
    if (!sb || sb.updating || this.ms?.readyState !== "open") return;
    if (this.trim(sb)) return;
    const next = this.queue.shift();
    if (!next) return;
    this.queued -= next.byteLength;
    try {
      sb.appendBuffer(next);
    } catch (e) {
      if (e instanceof DOMException && e.name === "QuotaExceededError") {
        this.queue.unshift(next);
        this.queued += next.byteLength;
        const t = this.video.currentTime;
        if (t > 1) sb.remove(0, t - 1);
        return;
      }
      this.status("The live video broke off; reconnecting…");
      this.ws?.close();
    }
  }

  /** Frees what lies well behind the playhead; true when a removal is under way. */
  private trim(sb: SourceBuffer): boolean {
    const b = sb.buffered;
    if (b.length === 0) return false;
    const t = this.video.currentTime;
    if (t - b.start(0) > TRIM_AT_S) {
      sb.remove(b.start(0), t - KEEP_BEHIND_S);
      return true;
    }
    return false;
  }

  private afterAppend(): void {
    const b = this.sb?.buffered;
    if (b && b.length > 0) {
      const end = b.end(b.length - 1);
      const v = this.video;
      if (!this.appendedMedia && end > 0) {
        this.appendedMedia = true;
        v.currentTime = Math.max(b.start(b.length - 1), end - EDGE_S);
        void v.play().catch(() => {});
      } else if (end - v.currentTime > MAX_LAG_S || v.currentTime < b.start(b.length - 1)) {
        v.currentTime = Math.max(b.start(b.length - 1), end - EDGE_S);
      }
    }
    this.pump();
  }

  private watchFirstFrame(): void {
    const v = this.video as HTMLVideoElement & {
      requestVideoFrameCallback?: (cb: () => void) => number;
    };
    const seen = () => {
      if (this.firstFrameSeen || this.stopped) return;
      this.firstFrameSeen = true;
      this.backoff = BACKOFF_MIN_MS;
      this.status(null);
      this.events.onFirstFrame?.(Math.round(performance.now() - this.openedAt));
    };
    if (typeof v.requestVideoFrameCallback === "function") v.requestVideoFrameCallback(seen);
    else v.addEventListener("loadeddata", seen, { once: true });
    // Later frames after a reconnect clear the status too.
    v.addEventListener("playing", () => {
      this.backoff = BACKOFF_MIN_MS;
      this.status(null);
    });
  }

  private resetMedia(): void {
    this.sb = null;
    this.mime = null;
    this.appendedMedia = false;
    if (this.ms && this.ms.readyState === "open") {
      try {
        this.ms.endOfStream();
      } catch {
        // already ended
      }
    }
    this.ms = null;
    if (this.objectUrl) {
      URL.revokeObjectURL(this.objectUrl);
      this.objectUrl = null;
    }
    this.queue = [];
    this.queued = 0;
  }

  private teardown(): void {
    const ws = this.ws;
    this.ws = null;
    if (ws) {
      ws.onmessage = null;
      ws.onclose = null;
      ws.close();
    }
    this.resetMedia();
    this.video.removeAttribute("src");
    this.video.load();
  }
}
