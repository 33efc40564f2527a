// Builds the app into dist/: index.html (the shell, no inline script or style) and
// assets/ with content-hashed app-*.js and app-*.css, which the hub embeds and serves
// with a long cache. One esbuild call, no plugins.
import * as esbuild from "esbuild";
import { mkdirSync, readFileSync, rmSync, writeFileSync, copyFileSync } from "node:fs";
import { basename } from "node:path";

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
