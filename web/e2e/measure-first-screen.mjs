// By hand, not in the suite (docs/BENCHMARKS.md, "Web client"): how long the first screen
// takes on this machine — a fresh browser context (empty cache) loading / from a local node
// until the login form is on screen, and again with the cache warm. Prints medians.
import { Node, launchBrowser } from './harness.mjs';

const RUNS = Number(process.env.RUNS ?? 15);
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

const node = await new Node().start();
const browser = await launchBrowser();
const cold = [];
const warm = [];
for (let i = 0; i < RUNS; i++) {
  const context = await browser.newContext();
  const page = await context.newPage();
  for (const into of [cold, warm]) {
    const t0 = Date.now();
    await page.goto(node.url + '/');
    await page.getByTestId('login-username').waitFor();
    into.push(Date.now() - t0);
  }
  await context.close();
}
const lcp = await (async () => {
  const context = await browser.newContext();
  const page = await context.newPage();
  await page.goto(node.url + '/');
  await page.getByTestId('login-username').waitFor();
  const v = await page.evaluate(() => performance.getEntriesByType('paint').map((e) => `${e.name} ${e.startTime.toFixed(0)} ms`));
  await context.close();
  return v;
})();
console.log(`first screen (navigation to the login form visible), ${RUNS} runs: cold cache median ${median(cold)} ms ` +
  `(min ${Math.min(...cold)}, max ${Math.max(...cold)}), warm cache median ${median(warm)} ms; paint: ${lcp.join(', ')}`);
await browser.close();
await node.close();
