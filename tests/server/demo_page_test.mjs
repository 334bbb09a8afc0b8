// The demo page in headless Chromium (run by demo_page_test.cpp, which starts provider-sim and the
// daemon): upload a menu, watch items appear while the stream runs, check the final page.
// Usage: node demo_page_test.mjs <daemon url> <menu image> <profile dir>. Prints a JSON report;
// exit code 0 when every check passed.
import puppeteer from "puppeteer-core";

const [base, fixture, profile] = process.argv.slice(2);
const browser = await puppeteer.launch({
  executablePath: "/usr/bin/chromium",
  headless: false,  // --headless is in args, as the test plan states it
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", `--user-data-dir=${profile}`],
});
const failures = [];
const consoleErrors = [];
const report = {};
try {
  const page = await browser.newPage();
  page.on("console", (m) => { if (m.type() === "error") consoleErrors.push(m.text()); });
  page.on("pageerror", (e) => consoleErrors.push(String(e)));
  page.on("requestfailed", (r) => consoleErrors.push(`request failed: ${r.url()} ${r.failure()?.errorText}`));

  await page.goto(`${base}/demo/`, { waitUntil: "load" });
  const input = await page.$("#file");
  await input.uploadFile(fixture);
  await page.click("#go");

  // Samples of the page while the stream runs: items shown before the run is over.
  const samples = [];
  const started = Date.now();
  for (;;) {
    const s = await page.evaluate(() => ({
      done: window.demo.done,
      items: document.querySelectorAll(".item").length,
      described: [...document.querySelectorAll(".item .description")].filter((e) => e.textContent).length,
      images: document.querySelectorAll(".item img").length,
    }));
    samples.push(s);
    if (s.done) break;
    if (Date.now() - started > 180000) { failures.push("the page did not finish within 180 s"); break; }
    await new Promise((r) => setTimeout(r, 25));
  }
  // Images load from provider-sim; give the last ones a moment.
  await page.waitForFunction(() => [...document.querySelectorAll(".item img")].every((i) => i.complete), { timeout: 30000 });

  const final = await page.evaluate(() => ({
    error: window.demo.error,
    timeline: window.demo.timeline,
    result: window.demo.result,
    items: document.querySelectorAll(".item").length,
    images: [...document.querySelectorAll(".item img")].filter((i) => i.naturalWidth > 0).length,
    categories: [...document.querySelectorAll(".category h2 .translation")].map((e) => e.textContent),
    names: [...document.querySelectorAll(".item .name")].map((e) => e.textContent),
    status: document.getElementById("status").textContent,
  }));
  const expected = (final.result?.categories || []).reduce((n, c) => n + c.items.length, 0);
  const during = samples.filter((s) => !s.done);
  report.expected_items = expected;
  report.final = { items: final.items, images: final.images, categories: final.categories, status: final.status };
  report.samples_while_running = during.length;
  report.first_items_seen = during.find((s) => s.items > 0) || null;
  const events = final.timeline.map((e) => e.event);
  report.events = events.reduce((m, e) => ({ ...m, [e]: (m[e] || 0) + 1 }), {});

  if (final.error) failures.push(`the page shows an error: ${JSON.stringify(final.error)}`);
  if (!final.result) failures.push("no result event reached the page");
  if (expected === 0) failures.push("the result has no items");
  if (final.items !== expected) failures.push(`${final.items} items on the page, the result has ${expected}`);
  if (final.images !== expected) failures.push(`${final.images} of ${expected} images loaded`);
  if (final.names.some((n) => !n)) failures.push("an item without a name");
  // Progressive: items were on the page while the stream was still running, and before the result.
  if (!during.some((s) => s.items > 0)) failures.push("no item was shown before the stream ended");
  if (!during.some((s) => s.items > 0 && s.images < expected)) failures.push("items never appeared before all their images");
  const resultAt = final.timeline.findIndex((e) => e.event === "result");
  const firstItem = final.timeline.findIndex((e) => e.event === "item");
  if (firstItem < 0 || firstItem > resultAt) failures.push("no item event before the result");
  if (resultAt >= 0 && final.timeline[resultAt].items !== expected)
    failures.push(`items events filled ${final.timeline[resultAt].items} of ${expected} items before the result`);
} catch (e) {
  failures.push(`exception: ${e.stack || e}`);
} finally {
  await browser.close();
}
if (consoleErrors.length) failures.push(...consoleErrors.map((e) => `console error: ${e}`));
report.failures = failures;
console.log(JSON.stringify(report, null, 1));
process.exit(failures.length ? 1 : 0);
