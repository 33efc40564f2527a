// The app: sign-in (or first-run setup), then one screen per route under a shared
// navigation bar that shows what the user's role may use. A user the owner requires to
// turn on two-factor sees only the Account page until they have.
import { render } from "preact";
import { useEffect } from "preact/hooks";
import "./app.css";
import { type Me, type Role, api, get, setMustEnrolHandler, setUnauthenticatedHandler } from "./api";
import { Account } from "./pages/Account";
import { Audit } from "./pages/Audit";
import { CameraView } from "./pages/CameraView";
import { Cameras } from "./pages/Cameras";
import { Devices } from "./pages/Devices";
import { ExposurePage } from "./pages/Exposure";
import { InsightPage } from "./pages/Insight";
import { Live } from "./pages/Live";
import { People } from "./pages/People";
import { Security } from "./pages/Security";
import { Setup } from "./pages/Setup";
import { SignIn } from "./pages/SignIn";
import { StoragePage } from "./pages/Storage";
import { Timeline } from "./pages/Timeline";
import { linkClick, navigate, useLocation } from "./router";
import { refreshMe, setMe, useStore } from "./store";
import {
  AccountIcon,
  AuditIcon,
  CamerasIcon,
  CloudIcon,
  DevicesIcon,
  HomeIcon,
  InsightIcon,
  LiveIcon,
  PeopleIcon,
  SecurityIcon,
  StorageIcon,
  TimelineIcon,
} from "./widgets/icons";

const ALL: Role[] = ["owner", "member", "viewer"];
const MEMBERS: Role[] = ["owner", "member"];
const OWNER: Role[] = ["owner"];

// Who sees which link (api13.md, api13b.md): owner all; member Live, Timeline, Storage,
// Account; viewer Live, Account.
const NAV = [
  { href: "/", label: "Live", icon: LiveIcon, roles: ALL, match: (p: string) => p === "/" || p.startsWith("/camera/") },
  { href: "/timeline", label: "Timeline", icon: TimelineIcon, roles: MEMBERS, match: (p: string) => p.startsWith("/timeline") },
  { href: "/cameras", label: "Cameras", icon: CamerasIcon, roles: OWNER, match: (p: string) => p.startsWith("/cameras") },
  { href: "/devices", label: "Devices", icon: DevicesIcon, roles: OWNER, match: (p: string) => p.startsWith("/devices") },
  { href: "/storage", label: "Storage", icon: StorageIcon, roles: MEMBERS, match: (p: string) => p.startsWith("/storage") },
  { href: "/people", label: "People", icon: PeopleIcon, roles: OWNER, match: (p: string) => p.startsWith("/people") },
  { href: "/audit", label: "Audit", icon: AuditIcon, roles: OWNER, match: (p: string) => p.startsWith("/audit") },
  { href: "/security", label: "Security", icon: SecurityIcon, roles: OWNER, match: (p: string) => p.startsWith("/security") },
  { href: "/cloud", label: "What leaves", icon: CloudIcon, roles: OWNER, match: (p: string) => p.startsWith("/cloud") },
  { href: "/insight", label: "Insight", icon: InsightIcon, roles: OWNER, match: (p: string) => p.startsWith("/insight") },
  { href: "/account", label: "Account", icon: AccountIcon, roles: ALL, match: (p: string) => p.startsWith("/account") },
];

function OwnerOnly({ title }: { title: string }) {
  return (
    <section class="page" aria-labelledby="owner-only-title">
      <h1 id="owner-only-title">{title}</h1>
      <p>
        Only the owner of this hub can see this page. <a href="/" onClick={linkClick}>Go to the live view</a>.
      </p>
    </section>
  );
}

function Screen({ path, me }: { path: string; me: Me }) {
  // Until they have two-factor, the hub refuses everything else to this user.
  if (me.must_enrol) return <Account />;
  const owner = me.role === "owner";
  const cam = /^\/camera\/(\d+)$/.exec(path);
  if (path === "/") return <Live />;
  if (cam) return <CameraView id={Number(cam[1])} />;
  if (path === "/timeline") return <Timeline />;
  if (path === "/cameras") return <Cameras />;
  if (path === "/devices") return <Devices />;
  if (path === "/storage") return <StoragePage />;
  if (path === "/account") return <Account />;
  if (path === "/setup") return <Setup />;
  if (path === "/people") return owner ? <People /> : <OwnerOnly title="People" />;
  if (path === "/audit") return owner ? <Audit /> : <OwnerOnly title="Audit log" />;
  if (path === "/security") return owner ? <Security /> : <OwnerOnly title="Security" />;
  if (path === "/cloud") return owner ? <ExposurePage /> : <OwnerOnly title="What leaves this house" />;
  if (path === "/insight") return owner ? <InsightPage /> : <OwnerOnly title="Insight" />;
  return (
    <section class="page">
      <h1>Not found</h1>
      <p>
        There is no page at <code>{path}</code>. <a href="/" onClick={linkClick}>Go to the live view</a>.
      </p>
    </section>
  );
}

async function signOut(): Promise<void> {
  try {
    await api("DELETE", "/api/session");
  } finally {
    setMe(null);
    navigate("/", true);
  }
}

function Shell({ me }: { me: Me }) {
  const loc = useLocation();
  useEffect(() => {
    const main = document.getElementById("main");
    main?.focus({ preventScroll: true });
  }, [loc.path]);
  // Every path is the Account page while two-factor must be turned on: say so in the address.
  useEffect(() => {
    if (me.must_enrol && loc.path !== "/account") navigate("/account", true);
  }, [me.must_enrol, loc.path]);
  const nav = me.must_enrol ? NAV.filter((n) => n.href === "/account") : NAV.filter((n) => n.roles.includes(me.role));
  return (
    <>
      <a class="skip" href="#main">
        Skip to content
      </a>
      <header class="top">
        <span class="brand">
          <HomeIcon />
          homehub
        </span>
        <nav aria-label="Main">
          {/* The owner's many links go in rows of four on a phone (app.css). */}
          <ul class={nav.length > 9 ? "many" : undefined}>
            {nav.map((n) => (
              <li key={n.href}>
                <a href={n.href} onClick={linkClick} aria-current={n.match(loc.path) ? "page" : undefined}>
                  <n.icon />
                  <span>{n.label}</span>
                </a>
              </li>
            ))}
          </ul>
          <button type="button" class="signout" onClick={() => void signOut()} title={`Signed in as ${me.email}`}>
            Sign out
          </button>
        </nav>
      </header>
      <main id="main" tabIndex={-1}>
        <Screen path={loc.path} me={me} />
      </main>
    </>
  );
}

function App() {
  const { me } = useStore();
  const loc = useLocation();
  useEffect(() => {
    setUnauthenticatedHandler(() => setMe(null));
    // The owner turned on "require two-factor" meanwhile: /api/me says must_enrol now.
    setMustEnrolHandler(() => void refreshMe());
    get<Me>("/api/me")
      .then(setMe)
      .catch(() => setMe(null));
  }, []);
  if (me === undefined) return <p class="loading" role="status">Loading…</p>;
  // First run: the setup page works without a session (and welcomes the new owner in the shell).
  if (me === null) return loc.path === "/setup" ? <Setup /> : <SignIn onSignedIn={setMe} />;
  return <Shell me={me} />;
}

const root = document.getElementById("app");
if (root) render(<App />, root);
