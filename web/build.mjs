// Builds the browser client: node build.mjs [--outdir DIR] [--quiet] (default web/dist).
//
// The output must run under `script-src 'self'; style-src 'self'`, so index.html only
// references the hashed bundles; nothing is inlined. Content-hashed names let a server
// cache assets/ for ever and index.html never.
import { build } from 'esbuild';
import { copyFile, mkdir, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { dirname, extname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { gzipSync } from 'node:zlib';

const root = dirname(fileURLToPath(import.meta.url));

function parseArgs(argv) {
  let outdir = join(root, 'dist');
  let quiet = false;
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === '--quiet') quiet = true;
    else if (argv[i] === '--outdir' && argv[i + 1]) outdir = resolve(argv[++i]);
    else if (argv[i].startsWith('--outdir=')) outdir = resolve(argv[i].slice('--outdir='.length));
    else {
      console.error(`usage: node build.mjs [--outdir DIR] [--quiet]\nunknown argument: ${argv[i]}`);
      process.exit(2);
    }
  }
  return { outdir, quiet };
}

async function filesUnder(dir) {
  const out = [];
  for (const entry of await readdir(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) out.push(...(await filesUnder(path)));
    else out.push(path);
  }
  return out;
}

async function exists(path) {
  try {
    await stat(path);
    return true;
  } catch {
    return false;
  }
}

// The outputs esbuild made for one entry point, as paths relative to outdir.
function outputFor(metafile, outdir, entry) {
  for (const [path, info] of Object.entries(metafile.outputs)) {
    if (info.entryPoint === entry) return relative(outdir, resolve(path)).split('\\').join('/');
  }
  throw new Error(`no output for ${entry}`);
}

const escapeAttr = (s) => s.replace(/&/g, '&amp;').replace(/"/g, '&quot;');

async function main() {
  const { outdir, quiet } = parseArgs(process.argv.slice(2));
  if (outdir === root || outdir === '/') throw new Error(`refusing to clean ${outdir}`);
  await rm(outdir, { recursive: true, force: true });
  await mkdir(outdir, { recursive: true });

  const common = {
    absWorkingDir: root,
    bundle: true,
    minify: true,
    sourcemap: false,
    target: 'es2020',
    jsx: 'automatic',
    jsxImportSource: 'preact',
    legalComments: 'none',
    metafile: true,
    logLevel: 'warning',
  };
  const result = await build({
    ...common,
    entryPoints: { main: 'src/main.tsx', styles: 'src/styles.css' },
    outdir,
    entryNames: 'assets/[name]-[hash]',
    assetNames: 'assets/[name]-[hash]',
    format: 'esm',
    splitting: false,
  });
  // The service worker: at a fixed name at the root, since the page registers it by URL and
  // its scope (/) may not be wider than its directory. A classic script (no modules needed).
  const worker = await build({ ...common, entryPoints: ['src/sw.ts'], outfile: join(outdir, 'sw.js'), format: 'iife' });

  const script = outputFor(result.metafile, outdir, 'src/main.tsx');
  const style = outputFor(result.metafile, outdir, 'src/styles.css');

  const template = await readFile(join(root, 'index.html'), 'utf8');
  if (!template.includes('</head>')) throw new Error('index.html has no </head>');
  const tags =
    `<link rel="stylesheet" href="${escapeAttr(style)}">\n` +
    `<script type="module" src="${escapeAttr(script)}"></script>\n`;
  await writeFile(join(outdir, 'index.html'), template.replace('</head>', `${tags}</head>`));

  const publicDir = join(root, 'public');
  if (await exists(publicDir)) {
    for (const file of await filesUnder(publicDir)) {
      const target = join(outdir, relative(publicDir, file));
      await mkdir(dirname(target), { recursive: true });
      await copyFile(file, target);
    }
  }

  // Precompressed siblings, for a server that serves `<file>.gz` to clients accepting gzip.
  const compressible = new Set(['.js', '.css', '.html', '.svg', '.json']);
  let shipped = 0;
  for (const file of await filesUnder(outdir)) {
    if (!compressible.has(extname(file))) continue;
    const raw = await readFile(file);
    const gz = gzipSync(raw, { level: 9 });
    const ext = extname(file);
    if (ext === '.js' || ext === '.css') shipped += Math.min(gz.length, raw.length);
    if (gz.length < raw.length) await writeFile(`${file}.gz`, gz);
  }

  if (quiet) return;
  for (const [path, info] of [...Object.entries(result.metafile.outputs), ...Object.entries(worker.metafile.outputs)]) {
    console.log(`${relative(root, resolve(path))}  ${info.bytes} bytes`);
  }
  console.log(`gzipped JS+CSS: ${shipped} bytes (${(shipped / 1024).toFixed(1)} KiB)`);
}

main().catch((err) => {
  console.error(err instanceof Error ? err.message : err);
  process.exit(1);
});
