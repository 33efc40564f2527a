// Sign-in: the only screen without a session. The hub's error is shown as it is. An
// account with two-factor authentication gets a second step (the code from the app, or a
// recovery code); a hub without any user yet says how to set it up instead.
import { useEffect, useRef, useState } from "preact/hooks";
import { type Me, errorText, getMe, getSetup, isTotpRequired, signIn } from "../api";
import { linkClick } from "../router";
import { useStore } from "../store";
import { HomeIcon } from "../widgets/icons";
import { SetupInstructions } from "./Setup";

export function SignIn({ onSignedIn }: { onSignedIn: (me: Me) => void }) {
  // undefined: not asked yet. A hub that cannot say (an error) gets the sign-in form.
  const [needed, setNeeded] = useState<boolean | undefined>(undefined);
  useEffect(() => {
    let gone = false;
    getSetup()
      .then((r) => !gone && setNeeded(r.needed === true))
      .catch(() => !gone && setNeeded(false));
    return () => {
      gone = true;
    };
  }, []);
  if (needed === undefined)
    return (
      <main class="signin-page" id="main">
        <p class="loading" role="status">
          Loading…
        </p>
      </main>
    );
  if (needed) return <NotSetUp />;
  return <SignInForm onSignedIn={onSignedIn} />;
}

function NotSetUp() {
  return (
    <main class="signin-page" id="main">
      <section class="card signin" aria-labelledby="not-setup-title" data-testid="not-set-up">
        <p class="brand-line">
          <HomeIcon /> homehub
        </p>
        <h1 id="not-setup-title">This hub is not set up yet</h1>
        <SetupInstructions />
        <p>
          Have a setup token already?{" "}
          <a href="/setup" onClick={linkClick}>
            Enter the setup token
          </a>
          .
        </p>
      </section>
    </main>
  );
}

/** What the code field takes: the app's 6 digits, or a recovery code (any case, spaces ignored). */
function normaliseCode(raw: string): string {
  return raw.replace(/\s+/g, "").toLowerCase();
}

function SignInForm({ onSignedIn }: { onSignedIn: (me: Me) => void }) {
  const { notice } = useStore();
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  // The second step: the hub asked for the authentication code.
  const [needCode, setNeedCode] = useState(false);
  const [hint, setHint] = useState<string | null>(null);
  const [recovery, setRecovery] = useState(false);
  const codeRef = useRef<HTMLInputElement>(null);

  useEffect(() => {
    if (needCode) codeRef.current?.focus();
  }, [needCode, recovery]);

  async function submit(e: Event) {
    e.preventDefault();
    const form = e.currentTarget as HTMLFormElement;
    const data = new FormData(form);
    const email = String(data.get("email") ?? "");
    const password = String(data.get("password") ?? "");
    const code = needCode ? normaliseCode(String(data.get("totp") ?? "")) : undefined;
    if (code === "") {
      setError("Enter the code from your authenticator app, or a recovery code.");
      codeRef.current?.focus();
      return;
    }
    setBusy(true);
    setError(null);
    try {
      await signIn(email, password, code);
      onSignedIn(await getMe());
    } catch (err) {
      if (isTotpRequired(err) && !needCode) {
        // Not a mistake: the account has two-factor on; ask for the code.
        setNeedCode(true);
        setHint(errorText(err));
      } else {
        setError(errorText(err));
        if (isTotpRequired(err) && codeRef.current) {
          codeRef.current.value = "";
          codeRef.current.focus();
        }
      }
      setBusy(false);
    }
  }

  return (
    <main class="signin-page" id="main">
      <form id="signin" class="card signin" onSubmit={submit} aria-labelledby="signin-title">
        <h1 id="signin-title">
          <HomeIcon /> homehub
        </h1>
        {notice && (
          <p role="status" class="notice" data-testid="signin-notice">
            {notice}
          </p>
        )}
        <p class="muted">Sign in to see your cameras.</p>
        <label>
          Email
          <input name="email" type="email" autocomplete="username" required maxLength={254} />
        </label>
        <label>
          Password
          <input name="password" type="password" autocomplete="current-password" required maxLength={1024} />
        </label>
        {needCode && (
          <>
            {hint && (
              <p role="status" class="notice">
                {hint}
              </p>
            )}
            <label>
              Authentication code
              <input
                ref={codeRef}
                name="totp"
                inputMode={recovery ? "text" : "numeric"}
                autocomplete="one-time-code"
                autocapitalize="off"
                spellcheck={false}
                required
                maxLength={32}
                aria-describedby="totp-help"
              />
            </label>
            <p id="totp-help" class="small">
              The 6-digit code from your authenticator app, or one of your recovery codes (<code>xxxxx-xxxxx</code>, letters and digits).
            </p>
            {!recovery && (
              <p class="small">
                <button type="button" class="link" onClick={() => setRecovery(true)}>
                  Type a recovery code instead
                </button>
              </p>
            )}
          </>
        )}
        {error && (
          <p role="alert" class="error">
            {error}
          </p>
        )}
        <button type="submit" class="primary" disabled={busy}>
          {busy ? "Signing in…" : "Sign in"}
        </button>
      </form>
    </main>
  );
}
