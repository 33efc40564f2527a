// First run: creates the hub's owner with the setup token from `sudo homehub setup-link`.
// The link carries the token in the fragment (/setup#token=…), which never reaches the
// server or its logs; the page reads it, then takes it out of the address bar. Signed in
// (the new owner is, at once), the page welcomes them and points at two-factor.
import { useEffect, useState } from "preact/hooks";
import { ApiError, createOwner, errorText, getMe, getSetup } from "../api";
import { linkClick, navigate } from "../router";
import { setMe, signedOutWith, useStore } from "../store";
import { HomeIcon } from "../widgets/icons";

export const MIN_PASSWORD = 12;

/** Characters as people count them (code points), as the hub does. */
export function passwordProblem(password: string, confirm?: string): string | null {
  if ([...password].length < MIN_PASSWORD) return `The password needs at least ${MIN_PASSWORD} characters.`;
  if (confirm !== undefined && password !== confirm) return "The two passwords are not the same.";
  return null;
}

/** How to get a setup link; said on this page and on the "not set up yet" one. */
export function SetupInstructions() {
  return (
    <p>
      Run <code>sudo homehub setup-link</code> on the hub and open the link it prints: it creates the owner's account.
    </p>
  );
}

// The token from the link, kept for the page's life (the address bar no longer has it),
// and the owner this page created (for the welcome once signed in).
let linkToken: string | null = null;
let created: string | null = null;

/** Reads `#token=…` once and clears the fragment from the address bar. */
function tokenFromLink(): string {
  const hash = window.location.hash;
  if (hash.length > 1) {
    const t = new URLSearchParams(hash.slice(1)).get("token");
    if (t !== null) {
      linkToken = t.trim();
      history.replaceState(history.state, "", window.location.pathname + window.location.search);
    }
  }
  return linkToken ?? "";
}

export function Setup() {
  const { me } = useStore();
  const [token, setToken] = useState(tokenFromLink);
  // The link pasted into a tab already on /setup changes only the fragment.
  useEffect(() => {
    const f = () => setToken(tokenFromLink());
    window.addEventListener("hashchange", f);
    return () => window.removeEventListener("hashchange", f);
  }, []);
  if (me) return <Welcome email={me.email} />;
  return <CreateOwner key={token} linkToken={token} />;
}

function Welcome({ email }: { email: string }) {
  if (!created)
    return (
      <section class="page" aria-labelledby="setup-title">
        <h1 id="setup-title">This hub is set up</h1>
        <p>
          You are signed in as {email}.{" "}
          <a href="/" onClick={linkClick}>
            Go to the live view
          </a>
          .
        </p>
      </section>
    );
  return (
    <section class="page" aria-labelledby="setup-title" data-testid="welcome">
      <h1 id="setup-title">Welcome</h1>
      <p>You are the owner of this hub, signed in as {created}.</p>
      <p>
        Next,{" "}
        <a href="/account" onClick={linkClick}>
          turn on two-factor authentication on the Account page
        </a>
        , so that a password alone is not enough to get in.
      </p>
      <ul>
        <li>
          <a href="/cameras" onClick={linkClick}>
            Add a camera
          </a>
        </li>
        <li>
          <a href="/people" onClick={linkClick}>
            Add the people who may watch
          </a>
        </li>
      </ul>
    </section>
  );
}

function CreateOwner({ linkToken }: { linkToken: string }) {
  const [needed, setNeeded] = useState<boolean | undefined>(undefined);
  // The token field shows when the link had none, or the hub refused the link's.
  const [askToken, setAskToken] = useState(linkToken === "");
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);

  useEffect(() => {
    let gone = false;
    getSetup()
      .then((r) => !gone && setNeeded(r.needed === true))
      .catch(() => !gone && setNeeded(true)); // cannot tell: let the hub answer the form
    return () => {
      gone = true;
    };
  }, []);

  async function submit(e: Event) {
    e.preventDefault();
    const data = new FormData(e.currentTarget as HTMLFormElement);
    const token = askToken ? String(data.get("token") ?? "").trim() : linkToken;
    const email = String(data.get("email") ?? "").trim();
    const password = String(data.get("password") ?? "");
    const problem = !token ? "Enter the setup token." : !email ? "Enter your email address." : passwordProblem(password, String(data.get("confirm") ?? ""));
    if (problem) {
      setError(problem);
      return;
    }
    setBusy(true);
    setError(null);
    try {
      const r = await createOwner(token, email, password);
      created = r.email || email;
    } catch (err) {
      // 403: the token is wrong, expired or used; let them paste another.
      if (err instanceof ApiError && err.status === 403) setAskToken(true);
      if (err instanceof ApiError && err.status === 409) setNeeded(false);
      setError(errorText(err));
      setBusy(false);
      return;
    }
    try {
      setMe(await getMe());
    } catch {
      signedOutWith(`The owner ${created} was created: sign in.`);
      navigate("/", true);
    }
  }

  if (needed === undefined)
    return (
      <main class="signin-page" id="main">
        <p class="loading" role="status">
          Loading…
        </p>
      </main>
    );

  return (
    <main class="signin-page" id="main">
      {needed ? (
        <form id="setup" class="card signin" onSubmit={submit} aria-labelledby="setup-title" noValidate>
          <p class="brand-line">
            <HomeIcon /> homehub
          </p>
          <h1 id="setup-title">Set up this hub</h1>
          <p>Create the owner's account: the owner adds cameras and devices and says who else may watch.</p>
          {askToken ? (
            <>
              <label>
                Setup token
                <input name="token" autocomplete="off" autocapitalize="off" spellcheck={false} required maxLength={256} aria-describedby="token-help" />
              </label>
              <div id="token-help" class="small">
                <SetupInstructions />
              </div>
            </>
          ) : (
            <p class="small">The setup link's token is filled in.</p>
          )}
          <label>
            Email
            <input name="email" type="email" autocomplete="username" required maxLength={254} />
          </label>
          <label>
            Password
            <input name="password" type="password" autocomplete="new-password" required maxLength={1024} aria-describedby="setup-password-help" />
          </label>
          <p id="setup-password-help" class="small">
            At least {MIN_PASSWORD} characters.
          </p>
          <label>
            Confirm password
            <input name="confirm" type="password" autocomplete="new-password" required maxLength={1024} />
          </label>
          {error && (
            <p role="alert" class="error">
              {error}
            </p>
          )}
          <button type="submit" class="primary" disabled={busy}>
            {busy ? "Creating…" : "Create the owner"}
          </button>
        </form>
      ) : (
        <section class="card signin" aria-labelledby="setup-title">
          <p class="brand-line">
            <HomeIcon /> homehub
          </p>
          <h1 id="setup-title">This hub is set up</h1>
          {error && (
            <p role="alert" class="error">
              {error}
            </p>
          )}
          <p>It has an owner already; the owner adds the other people.</p>
          <p>
            <a href="/" onClick={linkClick}>
              Sign in
            </a>
          </p>
        </section>
      )}
    </main>
  );
}
