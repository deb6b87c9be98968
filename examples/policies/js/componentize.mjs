// Builds one JavaScript policy into a component: esbuild bundles the
// policy with its npm dependencies into one module, componentize-js embeds
// it in the StarlingMonkey engine.
//
//   node componentize.mjs POLICY.js WIT_DIR OUT.wasm NODE_MODULES
import { mkdtemp, writeFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';

const [source, wit, out, modules] = process.argv.slice(2);
if (!modules) {
  console.error('usage: node componentize.mjs POLICY.js WIT_DIR OUT.wasm NODE_MODULES');
  process.exit(2);
}
const load = (name) => import(pathToFileURL(join(resolve(modules), name)).href);
const esbuild = await load('esbuild/lib/main.js');
const { componentize } = await load('@bytecodealliance/componentize-js/src/componentize.js');

const dir = await mkdtemp(join(tmpdir(), 'ramrod-js-policy-'));
try {
  const bundle = join(dir, 'policy.js');
  await esbuild.build({
    entryPoints: [source],
    bundle: true,
    format: 'esm',
    platform: 'neutral',
    target: 'es2022',
    nodePaths: [resolve(modules)],
    outfile: bundle,
    logLevel: 'warning',
  });
  const { component } = await componentize({
    sourcePath: bundle,
    witPath: resolve(wit),
    worldName: 'compaction-policy',
    // A policy needs no network, randomness or clocks of its own.
    disableFeatures: ['http', 'fetch-event', 'random', 'clocks'],
  });
  await writeFile(out, component);
} finally {
  await rm(dir, { recursive: true, force: true });
}
