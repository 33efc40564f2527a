// The app: sign-in, then one screen per route under a shared navigation bar.
import { render } from "preact";
import { useEffect } from "preact/hooks";
import "./app.css";
import { type Me, api, get, setUnauthenticatedHandler } from "./api";
import { CameraView } from "./pages/CameraView";
import { Cameras } from "./pages/Cameras";
import { Devices } from "./pages/Devices";
import { Live } from "./pages/Live";
import { SignIn } from "./pages/SignIn";
import { StoragePage } from "./pages/Storage";
import { Timeline } from "./pages/Timeline";
import { linkClick, navigate, useLocation } from "./router";
import { setMe, useStore } from "./store";
import { CamerasIcon, DevicesIcon, HomeIcon, LiveIcon, StorageIcon, TimelineIcon } from "./widgets/icons";

const NAV = [
  { href: "/", label: "Live", icon: LiveIcon, match: (p: string) => p === "/" || p.startsWith("/camera/") },
  { href: "/timeline", label: "Timeline", icon: TimelineIcon, match: (p: string) => p.startsWith("/timeline") },
  { href: "/cameras", label: "Cameras", icon: CamerasIcon, match: (p: string) => p.startsWith("/cameras") },
  { href: "/devices", label: "Devices", icon: DevicesIcon, match: (p: string) => p.startsWith("/devices") },
  { href: "/storage", label: "Storage", icon: StorageIcon, match: (p: string) => p.startsWith("/storage") },
];

function Screen({ path }: { path: string }) {
  const cam = /^\/camera\/(\d+)$/.exec(path);
  if (path === "/") return <Live />;
  if (cam) return <CameraView id={Number(cam[1])} />;
  if (path === "/timeline") return <Timeline />;
  if (path === "/cameras") return <Cameras />;
  if (path === "/devices") return <Devices />;
  if (path === "/storage") return <StoragePage />;
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
          <ul>
            {NAV.map((n) => (
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
        <Screen path={loc.path} />
      </main>
    </>
  );
}

function App() {
  const { me } = useStore();
  useEffect(() => {
    setUnauthenticatedHandler(() => setMe(null));
    get<Me>("/api/me")
      .then(setMe)
      .catch(() => setMe(null));
  }, []);
  if (me === undefined) return <p class="loading" role="status">Loading…</p>;
  if (me === null) return <SignIn onSignedIn={setMe} />;
  return <Shell me={me} />;
}

const root = document.getElementById("app");
if (root) render(<App />, root);
