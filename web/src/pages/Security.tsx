// Security (owner only): what `homehub doctor` finds, requiring two-factor for everyone,
// and the emergency brake: every browser session ends (the owner's too) and every paired
// device gets new credentials.
import { useEffect, useRef, useState } from "preact/hooks";
import { type Finding, type SignoutEverywhere, errorText, getDoctor, getSettings, signOutEverywhere, updateSettings } from "../api";
import { navigate } from "../router";
import { refreshMe, signedOutWith } from "../store";

function plural(n: number, one: string, many: string): string {
  return `${n} ${n === 1 ? one : many}`;
}

/** What the sign-in page says afterwards, with the hub's counts. */
export function signoutText(r: SignoutEverywhere): string {
  const rotated = r.devices_rotated ?? [];
  const offline = r.devices_offline ?? [];
  const parts = [`${plural(r.sessions ?? 0, "browser session", "browser sessions")} ended`, `new credentials for ${plural(rotated.length, "device", "devices")}`];
  if (offline.length > 0)
    parts.push(`${plural(offline.length, "device was", "devices were")} not reachable and must pair again (${offline.join(", ")})`);
  parts.push(`${plural(r.broker_users ?? 0, "broker login", "broker logins")} removed (make new ones with homehub mqtt-user add)`);
  return `Signed out everywhere: ${parts.join(", ")}. Sign in again.`;
}

export function Security() {
  return (
    <section class="page" aria-labelledby="security-title">
      <h1 id="security-title">Security</h1>
      <Doctor />
      <RequireTotp />
      <SignOutEverywhere />
    </section>
  );
}

function Doctor() {
  const [findings, setFindings] = useState<Finding[] | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  const [n, setN] = useState(0);

  useEffect(() => {
    let gone = false;
    setBusy(true);
    getDoctor()
      .then((r) => {
        if (gone) return;
        setFindings(r.findings ?? []);
        setError(null);
      })
      .catch((e) => !gone && setError(`Cannot run the checks: ${errorText(e)}`))
      .finally(() => !gone && setBusy(false));
    return () => {
      gone = true;
    };
  }, [n]);

  // Errors first.
  const sorted = findings ? [...findings].sort((a, b) => Number(b.severity === "error") - Number(a.severity === "error")) : [];
  return (
    <section aria-labelledby="doctor-title">
      <div class="title-row">
        <h2 id="doctor-title">Checks</h2>
        <button type="button" onClick={() => setN((x) => x + 1)} disabled={busy}>
          Check again
        </button>
      </div>
      <p class="small">The same checks as <code>homehub doctor</code> on the hub.</p>
      {error && (
        <p role="alert" class="error">
          {error}
        </p>
      )}
      {!findings && !error && <p role="status">Checking…</p>}
      {findings && findings.length === 0 && (
        <p class="ok all-good" data-testid="doctor-ok">
          All checks passed.
        </p>
      )}
      {findings && findings.length > 0 && (
        <>
          <p>
            {plural(findings.length, "finding", "findings")}:
          </p>
          <ul class="plain" data-testid="findings">
            {sorted.map((f, i) => (
              <li key={`${f.message}-${i}`} class={`card finding finding-${f.severity ?? "warning"}`} data-testid="finding">
                <p class="finding-head">
                  <span class={`badge severity-${f.severity ?? "warning"}`}>{f.severity === "error" ? "Error" : "Warning"}</span> <strong>{f.message}</strong>
                </p>
                {f.fix && <p>Fix: {f.fix}</p>}
              </li>
            ))}
          </ul>
        </>
      )}
    </section>
  );
}

function RequireTotp() {
  const [on, setOn] = useState<boolean | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [status, setStatus] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);

  useEffect(() => {
    getSettings()
      .then((s) => setOn(s.require_totp === true))
      .catch((e) => setError(`Cannot load the settings: ${errorText(e)}`));
  }, []);

  async function change(want: boolean) {
    setOn(want); // the box shows the click at once; it goes back if the hub refuses
    setBusy(true);
    setError(null);
    setStatus(null);
    try {
      const s = await updateSettings({ require_totp: want });
      setOn(s.require_totp === true);
      setStatus(s.require_totp ? "Saved: everyone needs two-factor authentication now." : "Saved: two-factor authentication is up to each person.");
      void refreshMe();
    } catch (e) {
      // 409: the owner has no 2FA themselves. The box goes back to what the hub has.
      setOn(!want);
      setError(errorText(e));
    } finally {
      setBusy(false);
    }
  }

  return (
    <section aria-labelledby="require-title">
      <h2 id="require-title">Two-factor authentication</h2>
      <div class="card form">
        <label class="check">
          <input type="checkbox" name="require_totp" checked={on === true} disabled={on === null || busy} onChange={(e) => void change(e.currentTarget.checked)} aria-describedby="require-help" />
          Require two-factor for everyone
        </label>
        <p id="require-help" class="small">
          Everyone without two-factor authentication is sent to set it up before they can use the hub. Turn it on for your own account first (on the Account page).
        </p>
        {error && (
          <p role="alert" class="error">
            {error}
          </p>
        )}
        <p role="status" class="ok">
          {status}
        </p>
      </div>
    </section>
  );
}

function SignOutEverywhere() {
  const [confirming, setConfirming] = useState(false);
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  const panel = useRef<HTMLDivElement>(null);
  const opener = useRef<HTMLButtonElement>(null);

  useEffect(() => {
    if (confirming) panel.current?.focus();
  }, [confirming]);

  async function go() {
    setBusy(true);
    setError(null);
    try {
      const r = await signOutEverywhere();
      // This browser's session is gone too: back to sign-in with what was done.
      signedOutWith(signoutText(r));
      navigate("/", true);
    } catch (e) {
      setError(errorText(e));
      setBusy(false);
    }
  }

  return (
    <section aria-labelledby="everywhere-title">
      <h2 id="everywhere-title">Sign out everywhere</h2>
      <div class="card form">
        <p>For when a password, a phone or a laptop may be in the wrong hands: everyone signs in again, and every paired device gets new credentials.</p>
        {!confirming ? (
          <div class="buttons">
            <button ref={opener} type="button" class="danger" onClick={() => setConfirming(true)}>
              Sign out everywhere and rotate device credentials
            </button>
          </div>
        ) : (
          <div ref={panel} class="confirm" role="group" aria-labelledby="everywhere-confirm-title" tabIndex={-1} data-testid="signout-confirm">
            <p id="everywhere-confirm-title">
              <strong>Sign out everywhere and rotate device credentials?</strong>
            </p>
            <ul>
              <li>Every browser session on the hub ends, yours included: everyone, you too, has to sign in again.</li>
              <li>Every paired device gets new credentials from the hub, so copies of the old ones stop working.</li>
              <li>The counts are shown on the sign-in page afterwards.</li>
            </ul>
            {error && (
              <p role="alert" class="error">
                {error}
              </p>
            )}
            <div class="buttons">
              <button type="button" class="danger" onClick={() => void go()} disabled={busy}>
                {busy ? "Signing out everywhere…" : "Yes, sign out everywhere"}
              </button>
              <button
                type="button"
                onClick={() => {
                  setConfirming(false);
                  setError(null);
                  setTimeout(() => opener.current?.focus(), 0);
                }}
                disabled={busy}
              >
                Cancel
              </button>
            </div>
          </div>
        )}
      </div>
    </section>
  );
}
