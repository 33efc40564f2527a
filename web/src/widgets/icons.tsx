// Inline SVG icons (no icon font, no external images); decorative, so hidden from
// screen readers: the text next to each says what it means.
import type { JSX } from "preact";

function Icon({ children }: { children: JSX.Element | JSX.Element[] }) {
  return (
    <svg class="icon" viewBox="0 0 24 24" aria-hidden="true" focusable="false" fill="none" stroke="currentColor" stroke-width="2" stroke-linecap="round" stroke-linejoin="round">
      {children}
    </svg>
  );
}

export const LiveIcon = () => (
  <Icon>
    <rect x="3" y="6" width="13" height="12" rx="2" />
    <path d="m16 10 5-3v10l-5-3" />
  </Icon>
);
export const TimelineIcon = () => (
  <Icon>
    <path d="M3 12h18" />
    <path d="M7 8v8M12 5v14M17 9v6" />
  </Icon>
);
export const CamerasIcon = () => (
  <Icon>
    <path d="M4 7h3l2-2h6l2 2h3v12H4z" />
    <circle cx="12" cy="13" r="3.5" />
  </Icon>
);
export const DevicesIcon = () => (
  <Icon>
    <rect x="7" y="2" width="10" height="20" rx="2" />
    <path d="M11 18h2" />
  </Icon>
);
export const StorageIcon = () => (
  <Icon>
    <ellipse cx="12" cy="6" rx="8" ry="3" />
    <path d="M4 6v12c0 1.7 3.6 3 8 3s8-1.3 8-3V6" />
    <path d="M4 12c0 1.7 3.6 3 8 3s8-1.3 8-3" />
  </Icon>
);
export const HomeIcon = () => (
  <Icon>
    <path d="M3 11 12 3l9 8v9a1 1 0 0 1-1 1H4a1 1 0 0 1-1-1z" />
    <circle cx="12" cy="14" r="2.5" />
  </Icon>
);
export const PeopleIcon = () => (
  <Icon>
    <circle cx="9" cy="8" r="3.5" />
    <path d="M2.5 20c0-3.6 2.9-6 6.5-6s6.5 2.4 6.5 6" />
    <path d="M16 4.6a3.5 3.5 0 0 1 0 6.8M18.5 14.4c1.9.8 3 2.8 3 5.6" />
  </Icon>
);
export const AuditIcon = () => (
  <Icon>
    <path d="M6 3h9l4 4v14H6z" />
    <path d="M14 3v5h5" />
    <path d="M9 12h6M9 16h6" />
  </Icon>
);
export const SecurityIcon = () => (
  <Icon>
    <path d="M12 3 4 6v6c0 4.5 3.4 8.2 8 9 4.6-.8 8-4.5 8-9V6z" />
    <path d="m9 12 2 2 4-4" />
  </Icon>
);
export const AccountIcon = () => (
  <Icon>
    <circle cx="12" cy="12" r="9" />
    <circle cx="12" cy="10" r="3" />
    <path d="M6.5 18.5c1.2-2 3.2-3 5.5-3s4.3 1 5.5 3" />
  </Icon>
);
export const CloudIcon = () => (
  <Icon>
    <path d="M7 18a4.5 4.5 0 0 1-.7-8.95A6 6 0 0 1 17.7 9 4.5 4.5 0 0 1 17 18" />
    <path d="M12 21v-8M9 16l3-3 3 3" />
  </Icon>
);
export const InsightIcon = () => (
  <Icon>
    <path d="M4 4v16h16" />
    <path d="M8 16v-3M12 16V8M16 16v-5" />
  </Icon>
);
