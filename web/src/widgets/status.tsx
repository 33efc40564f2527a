import type { Camera } from "../api";

const LABEL: Record<Camera["status"], string> = {
  streaming: "Live",
  connecting: "Connecting",
  error: "Error",
  stopped: "Stopped",
};

export function StatusBadge({ status }: { status: Camera["status"] }) {
  return <span class={`badge status-${status}`}>{LABEL[status] ?? status}</span>;
}
