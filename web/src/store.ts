// The one store of what the API returned and the screens share: the signed-in user,
// the camera list (polled while someone looks) and a message for the sign-in screen.
// Screens read it through hooks.
import { useEffect, useState } from "preact/hooks";
import { type Camera, type Me, errorText, get, getMe } from "./api";

interface State {
  me: Me | null | undefined; // undefined: not asked yet; null: not signed in
  cameras: Camera[] | undefined;
  camerasError: string | null;
  /** Shown on sign-in after the session ended on purpose (e.g. "sign out everywhere"). */
  notice: string | null;
}

let state: State = { me: undefined, cameras: undefined, camerasError: null, notice: null };
const listeners = new Set<() => void>();

function set(patch: Partial<State>): void {
  state = { ...state, ...patch };
  listeners.forEach((f) => f());
}

export function useStore(): State {
  const [, force] = useState(0);
  useEffect(() => {
    const f = () => force((n) => n + 1);
    listeners.add(f);
    return () => {
      listeners.delete(f);
    };
  }, []);
  return state;
}

export function setMe(me: Me | null): void {
  set(me ? { me, notice: null } : { me: null, cameras: undefined, camerasError: null });
}

/** Signs this browser out locally with a message for the sign-in screen. */
export function signedOutWith(notice: string): void {
  set({ me: null, cameras: undefined, camerasError: null, notice });
}

/** Asks the hub who is signed in again (after 2FA or a role changed). */
export async function refreshMe(): Promise<void> {
  try {
    set({ me: await getMe() });
  } catch {
    // a 401 has already signed the browser out (the unauthenticated handler)
  }
}

export async function refreshCameras(): Promise<void> {
  try {
    const r = await get<{ items: Camera[] }>("/api/cameras");
    set({ cameras: r.items, camerasError: null });
  } catch (e) {
    set({ camerasError: errorText(e) });
  }
}

/** Keeps the camera list fresh while the calling screen is shown. */
export function useCameras(everyMs = 5000): State {
  const s = useStore();
  useEffect(() => {
    void refreshCameras();
    const t = setInterval(() => {
      if (!document.hidden) void refreshCameras();
    }, everyMs);
    return () => clearInterval(t);
  }, [everyMs]);
  return s;
}

export function isOwner(): boolean {
  return state.me?.role === "owner";
}
