// Sign-in: the only screen without a session. The hub's error is shown as it is.
import { useState } from "preact/hooks";
import { type Me, api, errorText } from "../api";
import { HomeIcon } from "../widgets/icons";

export function SignIn({ onSignedIn }: { onSignedIn: (me: Me) => void }) {
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);

  async function submit(e: Event) {
    e.preventDefault();
    const form = e.currentTarget as HTMLFormElement;
    const data = new FormData(form);
    setBusy(true);
    setError(null);
    try {
      const me = await api<Me>("POST", "/api/session", {
        email: String(data.get("email") ?? ""),
        password: String(data.get("password") ?? ""),
      });
      onSignedIn(me);
    } catch (err) {
      setError(errorText(err));
      setBusy(false);
    }
  }

  return (
    <main class="signin-page" id="main">
      <form id="signin" class="card signin" onSubmit={submit} aria-labelledby="signin-title">
        <h1 id="signin-title">
          <HomeIcon /> homehub
        </h1>
        <p class="muted">Sign in to see your cameras.</p>
        <label>
          Email
          <input name="email" type="email" autocomplete="username" required maxLength={254} />
        </label>
        <label>
          Password
          <input name="password" type="password" autocomplete="current-password" required maxLength={1024} />
        </label>
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
