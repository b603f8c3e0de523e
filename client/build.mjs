// Bundles src/main.js with esbuild and copies the static files into dist/.
// `node build.mjs` (or `npm run build`); no watch mode, the demo is small.
import { build } from 'esbuild';
import { copyFileSync, mkdirSync, rmSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const out = join(here, 'dist');

rmSync(out, { recursive: true, force: true });
mkdirSync(out, { recursive: true });

await build({
  entryPoints: [join(here, 'src/main.js')],
  bundle: true,
  format: 'esm',
  target: ['chrome110', 'firefox110', 'safari16'],
  sourcemap: true,
  minify: true,
  outfile: join(out, 'main.js'),
  logLevel: 'warning',
});

for (const f of ['index.html', 'style.css']) {
  copyFileSync(join(here, f), join(out, f));
}
console.log(`built ${out}`);
