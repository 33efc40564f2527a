// Checks the away page's SigV4 signer against the example in AWS's S3 documentation
// ("Signature Calculations for the Authorization Header", GET Bucket / list objects):
// node tests/browser/sigv4-check.mjs (needs the page built: make web).
import { build } from "../../web/node_modules/esbuild/lib/main.js";

const out = await build({ entryPoints: [new URL("../../web/away/s3.ts", import.meta.url).pathname], bundle: true, write: false, format: "esm", platform: "neutral" });
const mod = await import(`data:text/javascript;base64,${Buffer.from(out.outputFiles[0].text).toString("base64")}`);
const h = await mod.signedHeaders(
  "GET",
  new URL("https://examplebucket.s3.amazonaws.com/?max-keys=2&prefix=J"),
  "us-east-1",
  "AKIAIOSFODNN7EXAMPLE",
  "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
  new Date("2013-05-24T00:00:00Z"),
);
const want = "34b48302e7b5fa45bde8084f4b7868a86f0a534bc59db6670ed5711ef69dc6f7";
const got = /Signature=([0-9a-f]+)/.exec(h.authorization)?.[1];
if (got !== want) {
  console.error(`SigV4 mismatch: got ${got}, want ${want}\n${JSON.stringify(h)}`);
  process.exit(1);
}
console.log("sigv4: the AWS documentation example signs alike");
