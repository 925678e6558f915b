// The web console in a real browser: Debian's Chromium driven headless by
// playwright-core. Run by tests/e2e/console.rs against a running `hoist
// serve`, with:
//   HOIST_URL        the server (the page is loaded through a proxy here,
//                    so that the test can cut its connections)
//   HOIST_KEY        an API key
//   HOIST_REGISTRY   the registry releases may push to
//   HOIST_RELEASE_BASE  an image with a shell for release Dockerfiles
//   SCREENSHOTS      where to keep a screenshot of each page
//   CHROMIUM         the browser (default /usr/bin/chromium)
import assert from 'node:assert/strict';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import zlib from 'node:zlib';
import { chromium } from 'playwright-core';

const target = new URL(process.env.HOIST_URL);
const key = process.env.HOIST_KEY;
const registry = process.env.HOIST_REGISTRY;
const releaseBase = process.env.HOIST_RELEASE_BASE;
const shots = process.env.SCREENSHOTS;
fs.mkdirSync(shots, { recursive: true });

// A TCP proxy in front of the server whose connections the test can drop.
const sockets = new Set();
const proxy = net.createServer((client) => {
  const upstream = net.connect(Number(target.port), target.hostname);
  for (const s of [client, upstream]) {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
    s.on('error', () => {});
  }
  client.pipe(upstream);
  upstream.pipe(client);
  client.on('close', () => upstream.destroy());
  upstream.on('close', () => client.destroy());
});
await new Promise((r) => proxy.listen(0, '127.0.0.1', r));
const base = `http://127.0.0.1:${proxy.address().port}/`;
const dropConnections = () => {
  for (const s of sockets) s.destroy();
};

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: ['--no-sandbox'],
});
const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
await context.grantPermissions(['clipboard-read', 'clipboard-write'], { origin: base.slice(0, -1) });
const page = await context.newPage();
const consoleErrors = [];
page.on('pageerror', (e) => consoleErrors.push(String(e)));
page.on('console', (m) => {
  if (m.type() === 'error' && !/WebSocket|Failed to load resource/.test(m.text())) consoleErrors.push(m.text());
});

const step = (name) => console.log(`-- ${name}`);

// A PNG with something on it: its pixels take many values (a blank page
// is one colour).
function pngIsBlank(file) {
  const png = fs.readFileSync(file);
  assert.equal(png.subarray(1, 4).toString(), 'PNG', `${file} is not a PNG`);
  const idat = [];
  let at = 8;
  while (at < png.length) {
    const length = png.readUInt32BE(at);
    const type = png.subarray(at + 4, at + 8).toString();
    if (type === 'IDAT') idat.push(png.subarray(at + 8, at + 8 + length));
    at += 12 + length;
  }
  const raw = zlib.inflateSync(Buffer.concat(idat));
  const seen = new Set();
  for (let i = 0; i < raw.length && seen.size < 64; i += 7) seen.add(raw[i]);
  return seen.size < 16;
}

async function screenshot(name) {
  const file = path.join(shots, `${name}.png`);
  await page.screenshot({ path: file, fullPage: true });
  assert.ok(!pngIsBlank(file), `screenshot ${name} is blank`);
}

// Every control has a name a screen reader reads out.
async function everyControlIsLabelled(where) {
  const unlabelled = await page.evaluate(() => {
    const named = (el) => {
      if (el.getAttribute('aria-label') || el.getAttribute('aria-labelledby')) return true;
      if (el.labels && el.labels.length) return true;
      if (el.tagName === 'BUTTON' || el.tagName === 'A') return el.textContent.trim() !== '';
      return false;
    };
    return [...document.querySelectorAll('input, select, textarea, button, a[href]')]
      .filter((el) => el.offsetParent !== null || el.type === 'file')
      .filter((el) => !named(el))
      .map((el) => el.outerHTML.slice(0, 120));
  });
  assert.deepEqual(unlabelled, [], `unlabelled controls on ${where}`);
}

// Tabs until `selector` has the focus; fails if it never does.
async function tabTo(selector, max = 40) {
  for (let i = 0; i < max; i++) {
    if (await page.evaluate((s) => document.activeElement && document.activeElement.matches(s), selector)) return;
    await page.keyboard.press('Tab');
  }
  throw new Error(`Tab never reached ${selector}`);
}

async function buildEnds(timeout = 240_000) {
  await page.waitForFunction(() => {
    const s = document.querySelector('#build-status .badge');
    return s && ['completed', 'failed', 'cancelled'].includes(s.textContent);
  }, null, { timeout });
  return page.textContent('#build-status .badge');
}

const CODE = [
  'import json',
  '',
  'def handler(inputs):',
  '    if inputs.get("fail"):',
  '        raise ValueError("asked to fail")',
  '    return {"hello": inputs.get("name", "world")}',
  '',
].join('\n');

try {
  step('sign in, keyboard only, a wrong key first');
  await page.goto(base);
  await page.waitForSelector('form[aria-label="Sign in"]');
  assert.equal(await page.getAttribute('#nav', 'hidden'), '', 'no navigation before signing in');
  await everyControlIsLabelled('sign in');
  await screenshot('sign-in');
  await tabTo('input[type=password]');
  await page.keyboard.type('hoist_not-a-key');
  await page.keyboard.press('Enter');
  await page.waitForSelector('text=This key is not valid.');
  assert.equal(await page.evaluate(() => sessionStorage.length), 0, 'a refused key is not kept');
  await page.fill('input[type=password]', '');
  await page.keyboard.type(key);
  await page.keyboard.press('Enter');
  await page.waitForSelector('h1:text("Functions")');
  assert.ok(!page.url().includes(key), 'the key is never in a URL');
  assert.equal(await page.evaluate(() => sessionStorage.getItem('hoist-api-key')), key);
  assert.equal(await page.evaluate(() => localStorage.length), 0, 'nothing in local storage');

  step('an invalid function: problems beside their lines');
  await page.goto(`${base}#/functions/new`);
  await page.waitForSelector('form[aria-label="New function"]');
  await everyControlIsLabelled('new function');
  await page.fill('form[aria-label="New function"] input >> nth=0', 'bad');
  await page.fill('textarea >> nth=0', 'import subprocess\n\ndef handler(inputs):\n    return eval("1")\n');
  await page.click('button:text("Submit function")');
  await page.waitForSelector('.annotated');
  const bad = await page.$$eval('.annotated .line.bad .no', (els) => els.map((e) => e.textContent));
  assert.deepEqual(bad, ['1', '4'], 'lines 1 and 4 are marked');
  const messages = await page.$$eval('.annotated .msg', (els) => els.map((e) => e.textContent));
  assert.ok(messages.some((m) => m.startsWith('user_function.py:1:') && m.includes('subprocess')), messages.join('\n'));
  assert.ok(messages.some((m) => m.startsWith('user_function.py:4:') && m.includes('eval')), messages.join('\n'));
  // Each message comes right after its line.
  const after = await page.$$eval('.annotated .line.bad', (els) => els.map((e) => e.nextElementSibling.className));
  assert.deepEqual(after, ['msg', 'msg']);
  await screenshot('function-problems');

  step('a function submitted with the keyboard alone, built live');
  await page.goto(`${base}#/functions/new`);
  await page.waitForSelector('form[aria-label="New function"]');
  await page.evaluate(() => document.activeElement.blur());
  await tabTo('form[aria-label="New function"] input:not([type])');
  await page.keyboard.type('greet');
  await page.keyboard.press('Tab');
  await page.keyboard.press('Control+A');
  await page.keyboard.type('2.0.0');
  await tabTo('form[aria-label="New function"] textarea');
  await page.keyboard.press('Control+A');
  await page.keyboard.insertText(CODE);
  await tabTo('form[aria-label="New function"] button[type=submit]');
  await page.keyboard.press('Enter');
  await page.waitForURL(/#\/builds\/[0-9a-f-]{36}$/);
  const functionBuild = page.url().split('/').pop();
  assert.equal(await buildEnds(), 'completed');
  assert.equal(await page.getAttribute('#build-progress', 'value'), '100');
  const image = await page.textContent('#image-url');
  const digest = await page.textContent('#image-digest');
  assert.match(digest, /^sha256:[0-9a-f]{64}$/);
  assert.ok(image.length > 0);
  assert.ok((await page.textContent('#image-size')).match(/[0-9]/));
  await page.click('button:text("Copy pull command")');
  await page.waitForSelector('text=Copied.');
  assert.equal(await page.evaluate(() => navigator.clipboard.readText()), await page.textContent('#pull-command'));
  assert.ok((await page.textContent('#build-log')).length > 0, 'the log shows the build');
  await screenshot('build-completed');

  step('invoke it: an output, then an error with its traceback');
  await page.goto(`${base}#/functions`);
  await page.waitForSelector('button[aria-label="Invoke greet 2.0.0"]');
  await everyControlIsLabelled('functions');
  await page.click('button[aria-label="Invoke greet 2.0.0"]');
  await page.fill('textarea[id]:visible', '{"name": "web"}');
  await page.click('button:text("Run")');
  await page.waitForSelector('pre.output');
  assert.deepEqual(JSON.parse(await page.textContent('pre.output')), { hello: 'web' });
  await page.fill('textarea[id]:visible', 'not json');
  await page.click('button:text("Run")');
  await page.waitForSelector('text=/Not JSON/');
  await page.fill('textarea[id]:visible', '{"fail": true}');
  await page.click('button:text("Run")');
  await page.waitForSelector('pre.traceback');
  assert.match(await page.textContent('.error-box h2'), /ValueError: asked to fail/);
  assert.match(await page.textContent('pre.traceback'), /raise ValueError/);
  await screenshot('invoke');

  step('the release form checks before it submits');
  await page.goto(`${base}#/releases/new`);
  await page.waitForSelector('form[aria-label="New release"]');
  await everyControlIsLabelled('new release');
  const registries = await page.locator('select').first().evaluate((s) => [...s.options].map((o) => o.value));
  assert.deepEqual(registries, [registry], 'the allow-list, nothing else');
  await page.fill('textarea', `FROM ${releaseBase}\nRUN true\n`);
  await page.fill('input[placeholder="team/app"]', 'Team/App');
  await page.fill('input[placeholder="1.0.0"]', 'latest');
  await page.click('button:text("Add build argument")');
  await page.locator('#build-args input').first().fill('1bad');
  await page.click('button:text("Start release build")');
  await page.waitForSelector('text=/latest is refused/');
  await page.waitForSelector('text=/Lowercase letters/');
  await page.waitForSelector('text=/Not variable names: 1bad/');
  assert.ok(await page.evaluate(() => document.activeElement.getAttribute('aria-invalid') === 'true'),
    'the first bad field has the focus');
  assert.ok(page.url().endsWith('#/releases/new'), 'nothing was submitted');
  await screenshot('release-problems');

  async function release(name, dockerfile, args = {}) {
    await page.goto(`${base}#/functions`);
    await page.goto(`${base}#/releases/new`);
    await page.waitForSelector('form[aria-label="New release"]');
    await page.fill('textarea', dockerfile);
    await page.fill('input[placeholder="team/app"]', name);
    await page.fill('input[placeholder="1.0.0"]', '1.0.0');
    for (const [k, v] of Object.entries(args)) {
      await page.click('button:text("Add build argument")');
      await page.locator('#build-args .arg').last().locator('input').first().fill(k);
      await page.locator('#build-args .arg').last().locator('input').last().fill(v);
    }
    await page.click('button:text("Start release build")');
    await page.waitForURL(/#\/builds\/[0-9a-f-]{36}$/);
    return page.url().split('/').pop();
  }

  step('a release submitted with the keyboard alone');
  const slow = `FROM ${releaseBase}\nARG COUNT\nRUN i=0; while [ $i -lt $COUNT ]; do i=$((i+1)); echo "line $i"; sleep 0.2; done\n`;
  await page.goto(`${base}#/functions`);
  await page.goto(`${base}#/releases/new`);
  await page.waitForSelector('form[aria-label="New release"]');
  const form = 'form[aria-label="New release"]';
  await tabTo(`${form} textarea`);
  await page.keyboard.press('Control+A');
  await page.keyboard.insertText(slow);
  await tabTo(`${form} input[placeholder="team/app"]`);
  await page.keyboard.type('acme/slow');
  await page.keyboard.press('Tab');
  await page.keyboard.type('1.0.0');
  await tabTo("#add-build-arg");
  await page.keyboard.press('Enter');
  await page.keyboard.type('COUNT');
  await page.keyboard.press('Tab');
  await page.keyboard.type('40');
  await tabTo(`${form} button[type=submit]`);
  await page.keyboard.press('Enter');
  await page.waitForURL(/#\/builds\/[0-9a-f-]{36}$/);

  step('its connection drops mid-build: no line lost or repeated');
  await page.waitForFunction(() => /line 5\n/.test((document.querySelector('#build-log')?.textContent || '')), null, { timeout: 120_000 });
  dropConnections();
  await page.waitForFunction(() => document.querySelector('#connection')?.dataset.state === 'reconnecting', null, { timeout: 10_000 });
  await screenshot('build-reconnecting');
  await page.waitForFunction(() => document.querySelector('#connection')?.dataset.state === 'live', null, { timeout: 30_000 });
  assert.equal(await buildEnds(), 'completed');
  const log = await page.textContent('#build-log');
  for (let i = 1; i <= 40; i++) {
    const n = log.split('\n').filter((l) => l === `line ${i}`).length;
    assert.equal(n, 1, `"line ${i}" appears ${n} times:\n${log}`);
  }
  assert.match(await page.textContent('#pull-command'), new RegExp(`^docker pull ${registry}/acme/slow:1\\.0\\.0`));

  step('the log stops following when scrolled up');
  await release('acme/chatty', slow, { COUNT: '60' });
  await page.waitForFunction(() => /line 30\n/.test((document.querySelector('#build-log')?.textContent || '')), null, { timeout: 120_000 });
  await page.evaluate(() => {
    const l = document.querySelector('#build-log');
    l.scrollTop = 0;
    l.dispatchEvent(new Event('scroll'));
  });
  await page.waitForFunction(() => /line 40\n/.test((document.querySelector('#build-log')?.textContent || '')));
  assert.equal(await page.evaluate(() => document.querySelector('#build-log').scrollTop), 0, 'stays where the user put it');
  await page.click('button:text("Follow the log")');
  await buildEnds();
  const atEnd = await page.evaluate(() => {
    const l = document.querySelector('#build-log');
    return l.scrollTop + l.clientHeight >= l.scrollHeight - 4;
  });
  assert.ok(atEnd, 'following again after the button');

  step('cancel a running release');
  await release('acme/long', `FROM ${releaseBase}\nRUN echo started; sleep 120\n`);
  await page.waitForFunction(() => (document.querySelector('#build-log')?.textContent || '').includes('started'), null, { timeout: 120_000 });
  await page.click('button:text("Cancel build")');
  assert.equal(await buildEnds(60_000), 'cancelled');
  assert.ok(await page.isDisabled('button:text("Cancel build")'));
  await screenshot('build-cancelled');

  step('a failing release shows its error and step');
  await release('acme/broken', `FROM ${releaseBase}\nRUN echo about to fail; exit 3\n`);
  assert.equal(await buildEnds(), 'failed');
  assert.match(await page.textContent('#error-step'), /RUN/);
  assert.match(await page.textContent('#build-error'), /exit|status|3/);
  await screenshot('build-failed');

  step('the builds list: filters and pages');
  await page.goto(`${base}#/builds?status=failed`);
  await page.waitForSelector('table');
  await everyControlIsLabelled('builds');
  const failed = await page.$$eval('tbody .badge', (els) => els.map((e) => e.textContent));
  assert.ok(failed.length >= 1 && failed.every((s) => s === 'failed'), failed.join());
  await page.goto(`${base}#/builds?limit=2`);
  await page.waitForSelector('nav.pager');
  assert.match(await page.textContent('nav.pager'), /1–2 of [5-9]/);
  await page.click('nav.pager a:text("Next")');
  await page.waitForFunction(() => /3–4 of/.test(document.querySelector('nav.pager')?.textContent || ''));
  await page.goto(`${base}#/builds`);
  await page.waitForSelector('table');
  await page.selectOption('select[name=function_id]', { label: 'greet 2.0.0' });
  await page.click('button:text("Filter")');
  await page.waitForURL(/function_id=/);
  await page.waitForSelector('tbody tr');
  const links = await page.$$eval('tbody a', (els) => els.map((e) => e.getAttribute('href')));
  assert.deepEqual(links, [`#/builds/${functionBuild}`]);
  await screenshot('builds');
  await page.click(`a[href="#/builds/${functionBuild}"]`);
  await page.waitForSelector('#image-digest');

  step('a phone-sized screen');
  await page.setViewportSize({ width: 390, height: 844 });
  for (const [name, where] of [['phone-functions', '#/functions'], ['phone-release', '#/releases/new'], ['phone-builds', '#/builds'], ['phone-build', `#/builds/${functionBuild}`]]) {
    await page.goto(`${base}${where}`);
    await page.waitForSelector('main h1');
    await page.waitForLoadState('networkidle');
    const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    assert.ok(overflow <= 1, `${where} scrolls sideways by ${overflow}px on a phone`);
    await screenshot(name);
  }

  step('sign out forgets the key');
  await page.click('#sign-out');
  await page.waitForSelector('form[aria-label="Sign in"]');
  assert.equal(await page.evaluate(() => sessionStorage.length), 0);

  assert.deepEqual(consoleErrors, [], 'no script errors');
  console.log('console: all checks passed');
} catch (err) {
  // What the page showed, for the report.
  console.log(`page ${page.url()}:\n${await page.textContent('main').catch(() => '(none)')}`);
  console.log(`script errors: ${consoleErrors.join('\n')}`);
  await page.screenshot({ path: path.join(shots, 'failure.png'), fullPage: true }).catch(() => {});
  throw err;
} finally {
  await browser.close();
  proxy.close();
}
