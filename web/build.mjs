// Builds the app into dist/: index.html (the shell, no inline script or style) and
// assets/ with content-hashed app-*.js and app-*.css, which the hub embeds and serves
// with a long cache. One esbuild call, no plugins.
import * as esbuild from "esbuild";
import { mkdirSync, readFileSync, rmSync, writeFileSync, copyFileSync } from "node:fs";
import { basename } from "node:path";
import { createHash } from "node:crypto";

const dist = "dist";
rmSync(dist, { recursive: true, force: true });
mkdirSync(`${dist}/assets`, { recursive: true });

const result = await esbuild.build({
  entryPoints: ["src/main.tsx"],
  bundle: true,
  minify: true,
  sourcemap: false,
  format: "esm",
  target: ["es2020", "safari15", "chrome100", "firefox100"],
  jsx: "automatic",
  jsxImportSource: "preact",
  outdir: `${dist}/assets`,
  entryNames: "app-[hash]",
  metafile: true,
  legalComments: "none",
  logLevel: "warning",
});

const outputs = Object.keys(result.metafile.outputs).map((p) => basename(p));
const js = outputs.find((f) => f.endsWith(".js"));
const css = outputs.find((f) => f.endsWith(".css"));
if (!js || !css) throw new Error(`esbuild wrote ${outputs.join(", ")}: expected one .js and one .css`);

copyFileSync("static/icon.svg", `${dist}/assets/icon.svg`);
copyFileSync("static/manifest.webmanifest", `${dist}/assets/manifest.webmanifest`);
const html = readFileSync("index.html", "utf8").replace("{{CSS}}", `/assets/${css}`).replace("{{JS}}", `/assets/${js}`);
writeFileSync(`${dist}/index.html`, html);

for (const f of [js, css]) {
  const bytes = result.metafile.outputs[`${dist}/assets/${f}`].bytes;
  console.log(`web: dist/assets/${f} ${(bytes / 1024).toFixed(1)} KiB`);
}

// The away page (web/away/): one self-contained file, script and style inlined and pinned
// by their hashes in its own Content-Security-Policy, so it works from the bucket, from a
// disk, or from anywhere else, the same for every hub.
{
  const r = await esbuild.build({
    entryPoints: ["away/away.ts"],
    bundle: true,
    minify: true,
    write: false,
    format: "esm",
    target: ["es2020", "safari15", "chrome100", "firefox100"],
    legalComments: "none",
    logLevel: "warning",
  });
  // An inline script must not close its own element.
  const script = r.outputFiles[0].text.replaceAll("</script", "<\\/script").trim();
  const style = (await esbuild.transform(readFileSync("away/away.css", "utf8"), { loader: "css", minify: true })).code.trim();
  const hash = (s) => `'sha256-${createHash("sha256").update(s).digest("base64")}'`;
  const csp = [
    "default-src 'none'",
    `script-src ${hash(script)}`,
    `style-src ${hash(style)}`,
    "img-src data:",
    "media-src blob:",
    "connect-src *",
    "base-uri 'none'",
    "form-action 'none'",
  ].join("; ");
  const page = readFileSync("away/away.html", "utf8")
    .replace("{{CSP}}", csp)
    .replace("{{STYLE}}", () => style)
    .replace("{{SCRIPT}}", () => script);
  writeFileSync(`${dist}/away.html`, page);
  console.log(`web: dist/away.html ${(page.length / 1024).toFixed(1)} KiB`);
}
