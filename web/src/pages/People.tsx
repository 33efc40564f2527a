// People (owner only): who may use the hub, with their role, two-factor and sessions;
// adding a person, changing a role, setting a new password, sharing cameras with them,
// signing them out everywhere and removing them.
import { useEffect, useRef, useState } from "preact/hooks";
import {
  type Camera,
  type Role,
  type User,
  addUser,
  errorText,
  getUsers,
  removeUser,
  revokeUserSessions,
  sameId,
  shareCameras,
  updateUser,
} from "../api";
import { dateTime } from "../format";
import { navigate } from "../router";
import { refreshCameras, refreshMe, signedOutWith, useStore } from "../store";
import { MIN_PASSWORD, passwordProblem } from "./Setup";

const ROLES: { value: Role; label: string }[] = [
  { value: "viewer", label: "Viewer" },
  { value: "member", label: "Member" },
  { value: "owner", label: "Owner" },
];

const roleLabel = (r: Role) => ROLES.find((x) => x.value === r)?.label ?? r;

function RoleHelp({ id }: { id: string }) {
  return (
    <p id={id} class="small">
      Viewers see the live view of the cameras shared with them; members also their timeline, recordings, events and clips; owners see and change everything.
    </p>
  );
}

function sessionsText(n: number): string {
  return `${n} ${n === 1 ? "session" : "sessions"}`;
}

export function People() {
  const { me, cameras } = useStore();
  const [users, setUsers] = useState<User[] | undefined>(undefined);
  const [error, setError] = useState<string | null>(null);
  const [message, setMessage] = useState<string | null>(null);
  const [adding, setAdding] = useState(false);
  const [n, setN] = useState(0);
  const reload = () => setN((x) => x + 1);

  useEffect(() => {
    void refreshCameras();
  }, []);
  useEffect(() => {
    let gone = false;
    getUsers()
      .then((r) => {
        if (gone) return;
        setUsers(r.items);
        setError(null);
      })
      .catch((e) => !gone && setError(`Cannot load the people: ${errorText(e)}`));
    return () => {
      gone = true;
    };
  }, [n]);

  return (
    <section class="page" aria-labelledby="people-title">
      <div class="title-row">
        <h1 id="people-title">People</h1>
        {!adding && (
          <button type="button" class="primary" onClick={() => setAdding(true)}>
            Add a person
          </button>
        )}
      </div>
      <p aria-live="polite" class="ok">
        {message}
      </p>
      {adding && (
        <AddPerson
          onDone={(u) => {
            setAdding(false);
            if (u) {
              setMessage(`${u.email} is added as ${roleLabel(u.role).toLowerCase()}.${u.role === "owner" ? "" : " Share cameras with them below."}`);
              reload();
            }
          }}
        />
      )}
      {error && (
        <p role="alert" class="error">
          {error}
        </p>
      )}
      {!users && !error && <p role="status">Loading…</p>}
      <ul class="plain">
        {users?.map((u) => (
          <PersonRow
            key={String(u.id)}
            u={u}
            self={sameId(u.id, me?.id)}
            cameras={cameras}
            onChange={(m, u2) => {
              setMessage(m);
              if (u2) setUsers((list) => list?.map((x) => (sameId(x.id, u2.id) ? u2 : x)));
              else reload();
            }}
          />
        ))}
      </ul>
    </section>
  );
}

function AddPerson({ onDone }: { onDone: (u: User | null) => void }) {
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  const first = useRef<HTMLInputElement>(null);
  useEffect(() => first.current?.focus(), []);

  async function submit(e: Event) {
    e.preventDefault();
    const data = new FormData(e.currentTarget as HTMLFormElement);
    const email = String(data.get("email") ?? "").trim();
    const role = String(data.get("role") ?? "viewer") as Role;
    const password = String(data.get("password") ?? "");
    const problem = !email ? "Enter their email address." : passwordProblem(password);
    if (problem) {
      setError(problem);
      return;
    }
    setBusy(true);
    setError(null);
    try {
      onDone(await addUser(email, role, password));
    } catch (err) {
      setError(`Cannot add: ${errorText(err)}`);
      setBusy(false);
    }
  }

  return (
    <form id="add-person" class="card form" onSubmit={submit} aria-labelledby="add-person-title" noValidate>
      <h2 id="add-person-title">Add a person</h2>
      <label>
        Email
        <input ref={first} name="email" type="email" autocomplete="off" required maxLength={254} />
      </label>
      <label>
        Role
        <select name="role" aria-describedby="add-role-help">
          {ROLES.map((r) => (
            <option key={r.value} value={r.value}>
              {r.label}
            </option>
          ))}
        </select>
      </label>
      <RoleHelp id="add-role-help" />
      <label>
        Initial password
        <input name="password" type="password" autocomplete="new-password" required maxLength={1024} aria-describedby="add-password-help" />
      </label>
      <p id="add-password-help" class="small">
        At least {MIN_PASSWORD} characters. Tell them yourself; they can change it on their Account page.
      </p>
      {error && (
        <p role="alert" class="error">
          {error}
        </p>
      )}
      <div class="buttons">
        <button type="submit" class="primary" disabled={busy}>
          Add
        </button>
        <button type="button" onClick={() => onDone(null)}>
          Cancel
        </button>
      </div>
    </form>
  );
}

type Panel = "role" | "password" | "cameras" | "remove" | null;

function PersonRow({ u, self, cameras, onChange }: { u: User; self: boolean; cameras: Camera[] | undefined; onChange: (message: string, updated?: User) => void }) {
  const [panel, setPanel] = useState<Panel>(null);
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  // The drafts of the role and camera panels, from the row as it is when one opens.
  const [role, setRole] = useState<Role>(u.role);
  const [picked, setPicked] = useState<number[]>(u.cameras);
  const owner = u.role === "owner";
  const key = `user-${String(u.id).replace(/[^\w-]/g, "_")}`;
  const shared = owner ? null : (cameras ?? []).filter((c) => u.cameras.includes(c.id)).length;

  function toggle(p: Panel) {
    setError(null);
    setRole(u.role);
    setPicked(u.cameras);
    setPanel((cur) => (cur === p ? null : p));
  }

  /** Runs a change; `done` says what happened (a user object updates the row in place). */
  async function run<T>(what: () => Promise<T>, done: (r: T) => { message: string; updated?: User }) {
    setBusy(true);
    setError(null);
    try {
      const r = await what();
      const d = done(r);
      setPanel(null);
      onChange(d.message, d.updated);
    } catch (e) {
      setError(errorText(e));
    } finally {
      setBusy(false);
    }
  }

  function saveRole(e: Event) {
    e.preventDefault();
    if (role === u.role) {
      setPanel(null);
      return;
    }
    void run(
      () => updateUser(u.id, { role }),
      (r) => {
        if (self) void refreshMe();
        return { message: `${u.email} is now ${roleLabel(r.role ?? role).toLowerCase()}.`, updated: r };
      },
    );
  }

  function setPassword(e: Event) {
    e.preventDefault();
    const password = String(new FormData(e.currentTarget as HTMLFormElement).get("password") ?? "");
    const problem = passwordProblem(password);
    if (problem) {
      setError(problem);
      return;
    }
    void run(
      () => updateUser(u.id, { password }),
      (r) => {
        if (self) {
          signedOutWith("Your password was changed and every session of yours signed out: sign in with the new password.");
          navigate("/", true);
        }
        return { message: `${u.email} has a new password and is signed out everywhere.`, updated: { ...r, sessions: 0 } };
      },
    );
  }

  function saveCameras(e: Event) {
    e.preventDefault();
    // Only cameras that still exist (a removed one may linger in the user's list).
    const ids = (cameras ?? []).map((c) => c.id).filter((id) => picked.includes(id));
    void run(
      () => shareCameras(u.id, ids),
      (r) => ({ message: `Cameras shared with ${u.email}: ${ids.length === 0 ? "none" : ids.length}.`, updated: r }),
    );
  }

  function signOutAll() {
    void run(
      () => revokeUserSessions(u.id),
      (r) => {
        const n = r?.revoked ?? 0;
        if (self) {
          signedOutWith(`You signed yourself out everywhere (${sessionsText(n)} ended).`);
          navigate("/", true);
        }
        return { message: `${u.email} is signed out everywhere (${sessionsText(n)} ended).`, updated: { ...u, sessions: 0 } };
      },
    );
  }

  function remove() {
    void run(
      () => removeUser(u.id),
      () => ({ message: `${u.email} is removed.` }),
    );
  }

  return (
    <li class="card person-row" data-testid="person-row" data-user-id={String(u.id)} data-email={u.email}>
      <div class="row-head">
        <h2>
          {u.email}
          {self && <span class="muted"> (you)</span>}
        </h2>
      </div>
      <dl class="facts">
        <div>
          <dt>Role</dt>
          <dd>{roleLabel(u.role)}</dd>
        </div>
        <div>
          <dt>Two-factor</dt>
          <dd>{u.totp ? "Yes" : "No"}</dd>
        </div>
        <div>
          <dt>Sessions</dt>
          <dd>{u.sessions}</dd>
        </div>
        <div>
          <dt>Cameras</dt>
          <dd>{owner ? "Every camera" : cameras ? `${shared} of ${cameras.length}` : u.cameras.length}</dd>
        </div>
        {u.created && (
          <div>
            <dt>Added</dt>
            <dd>{dateTime(u.created)}</dd>
          </div>
        )}
      </dl>
      {owner && <p class="small">Owners see every camera.</p>}
      <div class="buttons person-actions">
        <button type="button" onClick={() => toggle("role")} aria-expanded={panel === "role"} disabled={busy}>
          Change role<span class="sr-only"> of {u.email}</span>
        </button>
        <button type="button" onClick={() => toggle("password")} aria-expanded={panel === "password"} disabled={busy}>
          Reset password<span class="sr-only"> of {u.email}</span>
        </button>
        {!owner && (
          <button type="button" onClick={() => toggle("cameras")} aria-expanded={panel === "cameras"} disabled={busy}>
            Share cameras<span class="sr-only"> with {u.email}</span>
          </button>
        )}
        <button type="button" onClick={signOutAll} disabled={busy}>
          Sign out everywhere<span class="sr-only"> ({u.email})</span>
        </button>
        {!self && (
          <button type="button" class="danger" onClick={() => toggle("remove")} aria-expanded={panel === "remove"} disabled={busy}>
            Remove<span class="sr-only"> {u.email}</span>
          </button>
        )}
      </div>

      {panel === "role" && (
        <form class="form panel" onSubmit={saveRole} aria-label={`Change the role of ${u.email}`}>
          <label>
            New role
            <select name="role" value={role} onChange={(e) => setRole(e.currentTarget.value as Role)} aria-describedby={`${key}-role-help`}>
              {ROLES.map((r) => (
                <option key={r.value} value={r.value}>
                  {r.label}
                </option>
              ))}
            </select>
          </label>
          <RoleHelp id={`${key}-role-help`} />
          <div class="buttons">
            <button type="submit" class="primary" disabled={busy}>
              Save role
            </button>
            <button type="button" onClick={() => setPanel(null)}>
              Cancel
            </button>
          </div>
        </form>
      )}

      {panel === "password" && (
        <form class="form panel" onSubmit={setPassword} aria-label={`Reset the password of ${u.email}`} noValidate>
          <label>
            New password
            <input name="password" type="password" autocomplete="new-password" required maxLength={1024} aria-describedby={`${key}-password-help`} />
          </label>
          <p id={`${key}-password-help`} class="small">
            At least {MIN_PASSWORD} characters. {self ? "You are" : `${u.email} is`} signed out everywhere at once.
          </p>
          <div class="buttons">
            <button type="submit" class="primary" disabled={busy}>
              Set the password
            </button>
            <button type="button" onClick={() => setPanel(null)}>
              Cancel
            </button>
          </div>
        </form>
      )}

      {panel === "cameras" && (
        <form class="form panel" onSubmit={saveCameras} aria-label={`Share cameras with ${u.email}`}>
          <fieldset>
            <legend>Cameras shared with {u.email}</legend>
            {!cameras && <p role="status">Loading the cameras…</p>}
            {cameras && cameras.length === 0 && <p>There are no cameras yet.</p>}
            <ul class="plain checks">
              {cameras?.map((c) => (
                <li key={c.id}>
                  <label class="check">
                    <input
                      type="checkbox"
                      name="camera"
                      value={String(c.id)}
                      checked={picked.includes(c.id)}
                      onChange={(e) => {
                        const on = e.currentTarget.checked;
                        setPicked((p) => (on ? [...p.filter((x) => x !== c.id), c.id] : p.filter((x) => x !== c.id)));
                      }}
                    />
                    {c.name}
                  </label>
                </li>
              ))}
            </ul>
          </fieldset>
          <p class="small">
            {u.role === "viewer" ? "A viewer sees only the live view of these cameras." : "A member sees and plays back these cameras."} Other cameras stay hidden from them.
          </p>
          <div class="buttons">
            <button type="submit" class="primary" disabled={busy || !cameras}>
              Save cameras
            </button>
            <button type="button" onClick={() => setPanel(null)}>
              Cancel
            </button>
          </div>
        </form>
      )}

      {panel === "remove" && (
        <div class="panel confirm" role="group" aria-label={`Remove ${u.email}?`}>
          <p>
            Remove <strong>{u.email}</strong>? They are signed out at once and can no longer sign in.
          </p>
          <div class="buttons">
            <button type="button" class="danger" onClick={remove} disabled={busy}>
              Yes, remove {u.email}
            </button>
            <button type="button" onClick={() => setPanel(null)}>
              Cancel
            </button>
          </div>
        </div>
      )}

      {error && (
        <p role="alert" class="error">
          {error}
        </p>
      )}
    </li>
  );
}
