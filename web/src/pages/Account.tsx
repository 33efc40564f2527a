// Account: the signed-in user's own password, two-factor authentication (enrol with a QR
// code, recovery codes shown once, turn off) and sessions (revoke any). When the owner
// requires two-factor and this user has none, only the enrolment is here (the hub refuses
// everything else until then).
import type { JSX } from "preact";
import { useEffect, useRef, useState } from "preact/hooks";
import {
  type Me,
  type SessionInfo,
  type TotpEnrolment,
  changePassword,
  confirmTotp,
  disableTotp,
  errorText,
  getSessions,
  revokeSession,
  startTotp,
} from "../api";
import { dateTime } from "../format";
import { navigate } from "../router";
import { refreshMe, signedOutWith, useStore } from "../store";
import { MIN_PASSWORD, passwordProblem } from "./Setup";

export function Account() {
  const { me } = useStore();
  const [sessionsKey, setSessionsKey] = useState(0);
  if (!me) return null;
  const enrol = me.must_enrol;
  return (
    <section class="page" aria-labelledby="account-title">
      <h1 id="account-title">Account</h1>
      {enrol && (
        <p role="note" class="card notice warn-box" data-testid="must-enrol">
          The owner of this hub requires two-factor authentication for everyone. Turn it on below to use the hub.
        </p>
      )}
      <p>
        Signed in as <strong>{me.email}</strong> ({me.role}).
      </p>
      {!enrol && <PasswordForm key="password" onChanged={() => setSessionsKey((n) => n + 1)} />}
      <TwoFactor key="totp" me={me} />
      {!enrol && <Sessions key="sessions" reload={sessionsKey} />}
    </section>
  );
}

function PasswordForm({ onChanged }: { onChanged: () => void }) {
  const [error, setError] = useState<string | null>(null);
  const [status, setStatus] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);

  async function submit(e: Event) {
    e.preventDefault();
    const form = e.currentTarget as HTMLFormElement;
    const data = new FormData(form);
    const current = String(data.get("current") ?? "");
    const next = String(data.get("new") ?? "");
    const problem = !current ? "Enter your current password." : passwordProblem(next, String(data.get("confirm") ?? ""));
    setStatus(null);
    if (problem) {
      setError(problem);
      return;
    }
    setBusy(true);
    setError(null);
    try {
      const r = await changePassword(current, next);
      form.reset();
      const n = r?.revoked ?? 0;
      setStatus(`Password changed.${n > 0 ? ` ${n} other ${n === 1 ? "session was" : "sessions were"} signed out.` : ""}`);
      onChanged();
    } catch (err) {
      setError(errorText(err));
    } finally {
      setBusy(false);
    }
  }

  return (
    <section aria-labelledby="password-title">
      <h2 id="password-title">Password</h2>
      <form id="change-password" class="card form" onSubmit={submit} noValidate>
        <label>
          Current password
          <input name="current" type="password" autocomplete="current-password" required maxLength={1024} />
        </label>
        <label>
          New password
          <input name="new" type="password" autocomplete="new-password" required maxLength={1024} aria-describedby="new-password-help" />
        </label>
        <p id="new-password-help" class="small">
          At least {MIN_PASSWORD} characters. Your other sessions are signed out.
        </p>
        <label>
          Confirm the new password
          <input name="confirm" type="password" autocomplete="new-password" required maxLength={1024} />
        </label>
        {error && (
          <p role="alert" class="error">
            {error}
          </p>
        )}
        <p role="status" class="ok">
          {status}
        </p>
        <div class="buttons">
          <button type="submit" class="primary" disabled={busy}>
            Change password
          </button>
        </div>
      </form>
    </section>
  );
}

/** Saves the recovery codes as a text file made in the page. */
function downloadCodes(email: string, codes: string[]): void {
  const text = `homehub recovery codes for ${email}\nEach code signs you in once instead of the authenticator app's code.\n\n${codes.join("\n")}\n`;
  const url = URL.createObjectURL(new Blob([text], { type: "text/plain" }));
  const a = document.createElement("a");
  a.href = url;
  a.download = "homehub-recovery-codes.txt";
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10_000);
}

function TwoFactor({ me }: { me: Me }) {
  const [enrolment, setEnrolment] = useState<TotpEnrolment | null>(null);
  const [codes, setCodes] = useState<string[] | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [status, setStatus] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  const codeRef = useRef<HTMLInputElement>(null);
  const codesRef = useRef<HTMLHeadingElement>(null);
  const started = useRef(false);

  async function start() {
    setBusy(true);
    setError(null);
    setStatus(null);
    try {
      setEnrolment(await startTotp());
    } catch (err) {
      setError(errorText(err));
    } finally {
      setBusy(false);
    }
  }

  // Sent here because the owner requires it: begin at once.
  useEffect(() => {
    if (me.must_enrol && !me.totp && !started.current) {
      started.current = true;
      void start();
    }
  }, [me.must_enrol, me.totp]);

  useEffect(() => {
    if (enrolment) codeRef.current?.focus();
  }, [enrolment]);
  useEffect(() => {
    if (codes) codesRef.current?.focus();
  }, [codes]);

  async function confirm(e: Event) {
    e.preventDefault();
    const code = (codeRef.current?.value ?? "").replace(/\s+/g, "");
    if (!/^\d{6}$/.test(code)) {
      setError("Enter the 6-digit code your authenticator app shows.");
      return;
    }
    setBusy(true);
    setError(null);
    try {
      const r = await confirmTotp(code);
      setEnrolment(null);
      setCodes(r.recovery_codes);
      await refreshMe();
    } catch (err) {
      setError(errorText(err));
    } finally {
      setBusy(false);
    }
  }

  async function turnOff(e: Event) {
    e.preventDefault();
    const form = e.currentTarget as HTMLFormElement;
    const password = String(new FormData(form).get("password") ?? "");
    if (!password) {
      setError("Enter your password.");
      return;
    }
    setBusy(true);
    setError(null);
    setStatus(null);
    try {
      await disableTotp(password);
      form.reset();
      setStatus("Two-factor authentication is off.");
      await refreshMe();
    } catch (err) {
      setError(errorText(err));
    } finally {
      setBusy(false);
    }
  }

  let body: JSX.Element;
  if (codes) {
    body = (
      <div class="card form" data-testid="recovery-codes">
        <h3 id="codes-title" ref={codesRef} tabIndex={-1}>
          Two-factor authentication is on: save your recovery codes
        </h3>
        <p>
          Each code signs you in once if you lose the phone with the authenticator app. They are shown only now: download them or write them down, and keep
          them somewhere safe.
        </p>
        <ul class="recovery-codes" aria-labelledby="codes-title">
          {codes.map((c) => (
            <li key={c}>
              <code>{c}</code>
            </li>
          ))}
        </ul>
        <div class="buttons">
          <button type="button" onClick={() => downloadCodes(me.email, codes)}>
            Download
          </button>
          <button type="button" class="primary" onClick={() => setCodes(null)}>
            I have saved them
          </button>
        </div>
      </div>
    );
  } else if (enrolment) {
    body = (
      <form id="totp-enrol" class="card form" onSubmit={confirm} aria-labelledby="enrol-title" noValidate>
        <h3 id="enrol-title">Set up your authenticator app</h3>
        <p>Scan this QR code with an authenticator app (such as Aegis, Google Authenticator or 1Password), then type the 6-digit code it shows.</p>
        <div class="totp-qr" role="img" aria-label="QR code for your authenticator app" dangerouslySetInnerHTML={{ __html: enrolment.qr_svg }} />
        <p class="small">
          Cannot scan it? Type this key into the app instead: <code class="totp-secret">{enrolment.secret}</code>
        </p>
        <label>
          Authentication code
          <input ref={codeRef} name="code" inputMode="numeric" autocomplete="one-time-code" required maxLength={8} pattern="[0-9 ]*" />
        </label>
        {error && (
          <p role="alert" class="error">
            {error}
          </p>
        )}
        <div class="buttons">
          <button type="submit" class="primary" disabled={busy}>
            Turn on
          </button>
          {!me.must_enrol && (
            <button
              type="button"
              onClick={() => {
                setEnrolment(null);
                setError(null);
              }}
            >
              Cancel
            </button>
          )}
        </div>
      </form>
    );
  } else if (me.totp) {
    body = (
      <div class="card form">
        <p>
          Two-factor authentication is <strong>on</strong>: signing in takes your password and a code from your authenticator app (or a recovery code).
        </p>
        {me.require_totp ? (
          <p class="small">The owner requires two-factor authentication for everyone, so it cannot be turned off.</p>
        ) : (
          <form id="totp-disable" class="form" onSubmit={turnOff} aria-label="Turn off two-factor authentication" noValidate>
            <label>
              Your password
              <input name="password" type="password" autocomplete="current-password" required maxLength={1024} aria-describedby="totp-off-help" />
            </label>
            <p id="totp-off-help" class="small">
              To turn two-factor off, confirm with your password. Your recovery codes stop working.
            </p>
            {error && (
              <p role="alert" class="error">
                {error}
              </p>
            )}
            <div class="buttons">
              <button type="submit" class="danger" disabled={busy}>
                Turn off
              </button>
            </div>
          </form>
        )}
      </div>
    );
  } else {
    body = (
      <div class="card form">
        <p>
          Two-factor authentication is <strong>off</strong>. With it on, signing in also takes a code from an authenticator app on your phone, so a stolen
          password is not enough.
        </p>
        {error && (
          <p role="alert" class="error">
            {error}
          </p>
        )}
        <div class="buttons">
          <button type="button" class="primary" onClick={() => void start()} disabled={busy}>
            {busy ? "Starting…" : "Set up two-factor authentication"}
          </button>
        </div>
      </div>
    );
  }

  return (
    <section aria-labelledby="totp-title">
      <h2 id="totp-title">Two-factor authentication</h2>
      <p role="status" class="ok">
        {status}
      </p>
      {body}
    </section>
  );
}

/** "Firefox on Linux" from a User-Agent string; the full string stays in the title. */
export function agentName(ua: string): string {
  if (!ua) return "Unknown browser";
  const browser = /Edg\//.test(ua)
    ? "Edge"
    : /OPR\//.test(ua)
      ? "Opera"
      : /Firefox\//.test(ua)
        ? "Firefox"
        : /Chrom(e|ium)\//.test(ua)
          ? "Chrome"
          : /Safari\//.test(ua)
            ? "Safari"
            : (/^([\w.-]+)\//.exec(ua)?.[1] ?? "Unknown browser");
  const os = /Android/.test(ua)
    ? "Android"
    : /iPhone|iPad|iPod/.test(ua)
      ? "iOS"
      : /Windows/.test(ua)
        ? "Windows"
        : /Mac OS X|Macintosh/.test(ua)
          ? "macOS"
          : /CrOS/.test(ua)
            ? "ChromeOS"
            : /Linux/.test(ua)
              ? "Linux"
              : null;
  return os ? `${browser} on ${os}` : browser;
}

function Sessions({ reload }: { reload: number }) {
  const [items, setItems] = useState<SessionInfo[] | undefined>(undefined);
  const [error, setError] = useState<string | null>(null);
  const [status, setStatus] = useState<string | null>(null);
  const [busy, setBusy] = useState<string | null>(null);
  const [n, setN] = useState(0);

  useEffect(() => {
    let gone = false;
    getSessions()
      .then((r) => {
        if (gone) return;
        // This browser first, then the most recently seen.
        setItems([...r.items].sort((a, b) => Number(b.current) - Number(a.current) || b.last_seen.localeCompare(a.last_seen)));
        setError(null);
      })
      .catch((e) => !gone && setError(`Cannot load your sessions: ${errorText(e)}`));
    return () => {
      gone = true;
    };
  }, [reload, n]);

  async function revoke(s: SessionInfo) {
    setBusy(s.id);
    setError(null);
    setStatus(null);
    try {
      await revokeSession(s.id);
      if (s.current) {
        signedOutWith("You revoked this browser's session: sign in again.");
        navigate("/", true);
        return;
      }
      setStatus(`The session from ${s.address} (${agentName(s.agent)}) is revoked.`);
      setN((x) => x + 1);
    } catch (e) {
      setError(`Cannot revoke: ${errorText(e)}`);
    } finally {
      setBusy(null);
    }
  }

  function label(s: SessionInfo, all: SessionInfo[]): string {
    if (s.current) return `Revoke the session from ${s.address} (this browser)`;
    const same = all.filter((o) => !o.current && o.address === s.address).length > 1;
    return `Revoke the session from ${s.address}${same ? `, ${agentName(s.agent)}, signed in ${dateTime(s.created)}` : ""}`;
  }

  return (
    <section aria-labelledby="sessions-title">
      <h2 id="sessions-title">Sessions</h2>
      <p class="small">Where you are signed in. Revoke any you do not recognise; revoking this browser's signs you out here.</p>
      {error && (
        <p role="alert" class="error">
          {error}
        </p>
      )}
      <p role="status" class="ok">
        {status}
      </p>
      {!items && !error && <p role="status">Loading…</p>}
      {items && (
        <table class="data-table stack" data-testid="sessions">
          <caption class="sr-only">Your sessions</caption>
          <thead>
            <tr>
              <th scope="col">Device</th>
              <th scope="col">Address</th>
              <th scope="col">Signed in</th>
              <th scope="col">Last seen</th>
              <th scope="col">
                <span class="sr-only">Actions</span>
              </th>
            </tr>
          </thead>
          <tbody>
            {items.map((s) => (
              <tr key={s.id} data-testid="session-row" data-session-id={s.id} data-current={s.current ? "true" : "false"}>
                <td data-label="Device">
                  <span title={s.agent}>{agentName(s.agent)}</span>
                  {s.current && (
                    <>
                      {" "}
                      <span class="badge status-streaming">This browser</span>
                    </>
                  )}
                </td>
                <td class="nowrap" data-label="Address">{s.address}</td>
                <td data-label="Signed in">
                  <time dateTime={s.created}>{dateTime(s.created)}</time>
                </td>
                <td data-label="Last seen">
                  <time dateTime={s.last_seen}>{dateTime(s.last_seen)}</time>
                </td>
                <td>
                  <button type="button" class="danger" onClick={() => void revoke(s)} disabled={busy !== null} aria-label={label(s, items)}>
                    Revoke
                  </button>
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
    </section>
  );
}
