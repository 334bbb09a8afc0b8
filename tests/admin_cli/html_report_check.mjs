// Opens pipectl's HTML report in headless Chromium and prints, as one JSON line, what
// html_report_test.cpp checks: the drawn elements of each chart, console errors, and every URL the
// page asked for (it must ask for nothing but itself).
// node html_report_check.mjs CHROMIUM FILE_URL PROFILE_DIR
import puppeteer from 'puppeteer-core';

const [chromium, url, profile] = process.argv.slice(2);
// Only these flags: no sandbox (root in CI), no GPU, and none of Chromium's own network traffic.
const browser = await puppeteer.launch({
  executablePath: chromium,
  ignoreDefaultArgs: true,
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
         '--disable-component-update', '--disable-sync', `--user-data-dir=${profile}`],
});
try {
  const page = await browser.newPage();
  const errors = [];
  const requests = [];
  page.on('console', (m) => { if (m.type() === 'error') errors.push(m.text()); });
  page.on('pageerror', (e) => errors.push(String(e)));
  page.on('requestfailed', (r) => errors.push(`request failed: ${r.url()}`));
  page.on('request', (r) => requests.push(r.url()));
  await page.goto(url, { waitUntil: 'load' });
  const charts = await page.$$eval('svg.chart', (svgs) => svgs.map((s) => ({
    name: s.dataset.chart,
    drawn: s.querySelectorAll('.d').length,
    paths: s.querySelectorAll('path.d').length,
    rects: s.querySelectorAll('rect.d').length,
    width: s.getBoundingClientRect().width,
    height: s.getBoundingClientRect().height,
  })));
  const title = await page.title();
  console.log(JSON.stringify({ title, charts, errors, requests }));
} finally {
  await browser.close();
}
