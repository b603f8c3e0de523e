// Bundles src/main.jsx (100ms Prebuilt pointed at this platform) with esbuild into dist/,
// which control serves at /meeting/<room code>. `node build.mjs` (or `npm run build`).
import { build } from 'esbuild';
import { copyFileSync, mkdirSync, rmSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const out = join(here, 'dist');

rmSync(out, { recursive: true, force: true });
mkdirSync(out, { recursive: true });

await build({
  entryPoints: [join(here, 'src/main.jsx')],
  bundle: true,
  format: 'esm',
  target: ['chrome110', 'firefox110', 'safari16'],
  jsx: 'automatic',
  minify: true,
  sourcemap: false,
  // Libraries read NODE_ENV to drop their development checks.
  define: { 'process.env.NODE_ENV': '"production"', global: 'globalThis' },
  // Some of Prebuilt's dependencies read `process` as Node has it; the browser has none.
  banner: { js: 'globalThis.process ??= { env: { NODE_ENV: "production" }, browser: true };' },
  loader: { '.png': 'dataurl', '.svg': 'dataurl', '.woff': 'dataurl', '.woff2': 'dataurl', '.wasm': 'file' },
  outfile: join(out, 'main.js'),
  logLevel: 'warning',
});

copyFileSync(join(here, 'index.html'), join(out, 'index.html'));
console.log(`built ${out}`);
