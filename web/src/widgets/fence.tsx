// Where a paired device may point the hub: why its last config was refused, an "Allow
// this address" button for the owner when the host named is a private one, and the
// addresses allowed so far (each can be withdrawn).
import { useState } from "preact/hooks";
import { type Device, api, errorText } from "../api";

/// The device as GET /api/devices gives it, with the config check's fields.
type Fenced = Device & { config_refused?: string | null; approved_hosts?: string[] };

/// The host a refusal names, when the hub says the owner may allow it.
function allowable(reason: string): string | null {
  if (!reason.includes("may allow it")) return null;
  return /host (\S+) is not/.exec(reason)?.[1] ?? null;
}

export function DeviceFence({ d, owner, onChange }: { d: Fenced; owner: boolean; onChange: (message: string) => void }) {
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<string | null>(null);
  const hosts = d.approved_hosts ?? [];
  const refused = d.config_refused ?? null;
  const host = refused ? allowable(refused) : null;
  const name = d.model || d.id;
  const path = `/api/devices/${encodeURIComponent(d.id)}/hosts`;

  async function run(what: () => Promise<unknown>, done: string) {
    setBusy(true);
    setError(null);
    try {
      await what();
      onChange(done);
    } catch (e) {
      setError(errorText(e));
    } finally {
      setBusy(false);
    }
  }

  if (!refused && hosts.length === 0) return null;
  return (
    <div class="device-fence" data-testid="device-fence">
      {refused && (
        <p role="alert" class="error" data-testid="config-refused">
          Its camera was not started: {refused}
        </p>
      )}
      {owner && host && (
        <button type="button" disabled={busy} onClick={() => void run(() => api("POST", path, { host }), `${name} may now use ${host}.`)}>
          Allow this address ({host})
        </button>
      )}
      {hosts.length > 0 && (
        <p class="small">
          Also allowed:{" "}
          {hosts.map((h) => (
            <span key={h} class="fence-host">
              {h}
              {owner && (
                <button
                  type="button"
                  class="link"
                  disabled={busy}
                  aria-label={`Remove ${h} from the addresses ${name} may use`}
                  onClick={() => void run(() => api("DELETE", `${path}/${encodeURIComponent(h)}`), `${name} may no longer use ${h}.`)}
                >
                  Remove
                </button>
              )}{" "}
            </span>
          ))}
        </p>
      )}
      {error && (
        <p role="alert" class="error">
          {error}
        </p>
      )}
    </div>
  );
}
