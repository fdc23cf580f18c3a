// End-to-end stories of Strongroom in a real headless Chromium, run once per interface
// language. Run by the `browser` integration test (tests/browser.rs), which starts a fresh
// server and passes:
//   BASE_URL         the server, e.g. http://127.0.0.1:8123
//   ADMIN_USERNAME   the first administrator (default `admin`)
//   ADMIN_PASSWORD   its password; if it is the one-time password of a first start, the
//                    story chooses a new one on the password page
//   SCREENSHOT_DIR   where the screenshots and report.json go
//   CHROMIUM         the browser (default /usr/bin/chromium)
//   ADMIN_NEW_PASSWORD  the password to choose then (default: a random one)
//   LANGS            the languages to run (default `en,zh-CN`)
//   LOCAL_STYLE=1    serve /static/style.css from templates/static/ of this tree instead of
//                    the copy built into the server (to try style changes without a rebuild)
//   NARROW_WIDTH     the narrow viewport's width (default 390)
//   REPORT_ONLY=1    print every failed page check but exit 0 (a broken story still fails)
//
// Every page visited is checked: axe-core (serious and critical violations), no horizontal
// scrolling at a 390 px wide viewport, `<html lang>` matching the browser's language, no
// uncaught script error; and photographed (full page, wide and at 390 px) as
// `<lang>-<nn>-<step>.png` and `<lang>-<nn>-<step>-390.png`.
//
// Selectors never use visible text (the pages are translated): links by `href`, forms by
// `action`, inputs by `name`, and the `button[type=submit]` of a given form.

import { chromium } from 'playwright-core';
import { createRequire } from 'node:module';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createHmac, randomBytes, randomInt } from 'node:crypto';
import path from 'node:path';

const require = createRequire(import.meta.url);
// The pages answer under `script-src 'self'`, so a <script> tag added by the test
// (page.addScriptTag) is refused by the page's own policy; axe's source is evaluated through
// the DevTools protocol instead, which the policy does not govern. The pages themselves
// keep their real policy: the stories prove they work under it.
const AXE_SOURCE = readFileSync(require.resolve('axe-core/axe.min.js'), 'utf8');

const BASE_URL = (process.env.BASE_URL || 'http://127.0.0.1:8000').replace(/\/+$/, '');
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const SCREENSHOT_DIR = path.resolve(process.env.SCREENSHOT_DIR || 'target/screenshots');
const REPORT_ONLY = process.env.REPORT_ONLY === '1';
const LANGS = (process.env.LANGS || 'en,zh-CN')
  .split(',')
  .map((l) => l.trim())
  .filter(Boolean);
const LOCAL_STYLE = process.env.LOCAL_STYLE === '1'
  ? readFileSync(new URL('../../templates/static/style.css', import.meta.url))
  : null;
const NARROW = Number(process.env.NARROW_WIDTH || 390);
const WIDE = { width: 1280, height: 900 };
const TIMEOUT_MS = 30_000;

if (!process.env.ADMIN_PASSWORD) {
  console.error('ADMIN_PASSWORD is not set: give the first administrator\'s password');
  process.exit(2);
}

const admin = {
  role: 'admin',
  username: process.env.ADMIN_USERNAME || 'admin',
  password: process.env.ADMIN_PASSWORD,
  newPassword: process.env.ADMIN_NEW_PASSWORD || secret(),
};

/** Every page check, in the order the pages were visited. */
const checks = [];
/** Story steps that could not be carried out: `{lang, step, message}`. */
const storyFailures = [];

class StoryError extends Error {}

function secret() {
  return randomBytes(18).toString('base64url');
}

function tagFor(lang) {
  const letters = 'abcdefghijkmnpqrstuvwxyz23456789';
  let s = '';
  for (let i = 0; i < 5; i++) s += letters[randomInt(letters.length)];
  return `${lang.slice(0, 2).toLowerCase()}${s}`;
}

function slug(s) {
  return s.replace(/[^A-Za-z0-9-]+/g, '-').replace(/^-|-$/g, '');
}

function today(plusDays = 0) {
  const d = new Date(Date.now() + plusDays * 86_400_000);
  return d.toISOString().slice(0, 10);
}

// ------------------------------------------------------------------ two-factor sign-in

/** RFC 4648 base32 (the key the enrolment page shows) to bytes. */
function base32Decode(text) {
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';
  const out = [];
  let buffer = 0;
  let bits = 0;
  for (const c of text.replace(/[\s=]/g, '').toUpperCase()) {
    const v = alphabet.indexOf(c);
    if (v < 0) throw new StoryError(`the key shown is not base32: ${c}`);
    buffer = ((buffer << 5) | v) & 0xffff;
    bits += 5;
    if (bits >= 8) {
      bits -= 8;
      out.push((buffer >> bits) & 0xff);
    }
  }
  return Buffer.from(out);
}

/** RFC 6238 TOTP (HMAC-SHA1, 30 s steps, 6 digits): the code of time step `step`, computed
 *  here as an authenticator app would, independently of the server. */
function totpCode(secret, step) {
  const counter = Buffer.alloc(8);
  counter.writeBigUInt64BE(BigInt(step));
  const h = createHmac('sha1', secret).update(counter).digest();
  const o = h[h.length - 1] & 0x0f;
  const bin = ((h[o] & 0x7f) << 24) | (h[o + 1] << 16) | (h[o + 2] << 8) | h[o + 3];
  return String(bin % 1_000_000).padStart(6, '0');
}

// RFC 6238 appendix B (SHA-1, T = 59 s: 94287082, whose last six digits are the code).
if (totpCode(Buffer.from('12345678901234567890'), 1) !== '287082') {
  console.error('the stories\' TOTP does not match RFC 6238');
  process.exit(2);
}

/** A code of a step the server has not accepted from this person yet: the server accepts
 *  the current step and the next, and refuses any step at or before the last it took, so
 *  when both are used up this waits for the next step to begin. */
async function freshCode(who) {
  for (;;) {
    const now = Math.floor(Date.now() / 30_000);
    const step = Math.max(now, (who.lastStep ?? -1) + 1);
    if (step <= now + 1) {
      who.lastStep = step;
      return totpCode(who.totpSecret, step);
    }
    await new Promise((r) => setTimeout(r, 30_000 - (Date.now() % 30_000) + 250));
  }
}

/** Enrols the signed-in person on the enrolment page (where the pages send a person whose
 *  role requires a second factor): reads the key from the page, confirms with a code
 *  computed here, and keeps the recovery codes shown once. */
async function enrolSecondFactor(run, page, who) {
  expectPath(page, /^\/account\/totp$/, `${who.username} sent to two-factor enrolment`);
  await checkPage(run, page, 'totp-enrolment-required');
  await submit(run, page, form(page, '/account/totp'), {}, 'totp-qr-code');
  if ((await page.locator('svg.qr').count()) === 0) throw new StoryError('no QR code on the enrolment page');
  const secret = await page.locator('code.totp-secret').first().getAttribute('data-secret');
  if (!secret) throw new StoryError('no key on the enrolment page');
  who.totpSecret = base32Decode(secret);
  who.lastStep = undefined;
  await submit(run, page, form(page, '/account/totp/confirm'), { code: await freshCode(who) }, 'totp-recovery-codes');
  who.recoveryCodes = await page.locator('code.recovery-code').allInnerTexts();
  if (who.recoveryCodes.length !== 10) {
    throw new StoryError(`${who.username}: ${who.recoveryCodes.length} recovery codes shown, expected 10`);
  }
  await follow(run, page, '/', null);
}

/** Signs out (the header's form) and back in with password and code. */
async function signInAgainWithCode(run, page, who) {
  await submit(run, page, form(page, '/logout'), {}, null);
  expectPath(page, /^\/login$/, `${who.username} signing out`);
  await passwordStep(run, page, who);
  expectPath(page, /^\/$/, `${who.username} signing in with a code`);
}

/** The sign-in page, then (for a person with a second factor) the code page. */
async function passwordStep(run, page, who) {
  await submit(run, page, form(page, '/login'), { username: who.username, password: who.password }, null);
  if (new URL(page.url()).pathname === '/login') {
    throw new StoryError(`${who.username} could not sign in: ${await errorText(page)}`);
  }
  if (new URL(page.url()).pathname === '/login/code') {
    if (!who.totpSecret) throw new StoryError(`${who.username} was asked for a code before enrolling`);
    await checkPage(run, page, 'sign-in-code');
    await submit(run, page, form(page, '/login/code'), { code: await freshCode(who) }, null);
    if (new URL(page.url()).pathname.startsWith('/login')) {
      throw new StoryError(`${who.username}'s code was refused: ${await errorText(page)}`);
    }
  }
}

// ------------------------------------------------------------------ test data

/** A valid PDF of `n` US-letter pages, each saying which page it is, with a mark at the
 *  left edge (the zoom story looks for the left edge of a page). */
function pdf(title, n = 4) {
  const objects = [
    '<< /Type /Catalog /Pages 2 0 R >>',
    `<< /Type /Pages /Kids [${Array.from({ length: n }, (_, i) => `${4 + 2 * i} 0 R`).join(' ')}] /Count ${n} >>`,
    '<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>',
  ];
  for (let i = 0; i < n; i++) {
    const content =
      `BT /F1 30 Tf 72 700 Td (${title}) Tj ET ` +
      `BT /F1 48 Tf 72 600 Td (Page ${i + 1} of ${n}) Tj ET ` +
      'BT /F1 12 Tf 4 396 Td (|< left edge) Tj ET ' +
      '0 0 1 rg 0 0 6 792 re f';
    objects.push(
      `<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Resources << /Font << /F1 3 0 R >> >> /Contents ${5 + 2 * i} 0 R >>`,
    );
    objects.push(`<< /Length ${content.length} >>\nstream\n${content}\nendstream`);
  }
  let out = '%PDF-1.4\n';
  const offsets = [];
  objects.forEach((o, i) => {
    offsets.push(out.length);
    out += `${i + 1} 0 obj\n${o}\nendobj\n`;
  });
  const xref = out.length;
  out += `xref\n0 ${objects.length + 1}\n0000000000 65535 f \n`;
  for (const off of offsets) out += `${String(off).padStart(10, '0')} 00000 n \n`;
  out += `trailer\n<< /Size ${objects.length + 1} /Root 1 0 R >>\nstartxref\n${xref}\n%%EOF\n`;
  return Buffer.from(out, 'latin1');
}

/** The people, records and words of one language's run; fresh for every run. */
function cast(lang) {
  const tag = tagFor(lang);
  const zh = lang.startsWith('zh');
  const person = (role, display, name = role) => ({
    role,
    username: `${name}.${tag}`,
    display,
    password: secret(),
    newPassword: secret(),
  });
  const phone = `138${String(randomInt(10_000_000, 99_999_999))}`;
  const company = zh ? `上海华信${tag}贸易有限公司` : `Huaxin ${tag} Trading Company Ltd`;
  return {
    tag,
    department: zh ? `理赔部 ${tag}` : `Claims ${tag}`,
    people: {
      archivist: person('archivist', zh ? '王档案' : 'Alice Archer'),
      employee: person('employee', zh ? '张三丰' : 'Evan Employee'),
      supervisor: person('supervisor', zh ? '李主管' : 'Sara Supervisor'),
      auditor: person('auditor', zh ? '赵审计' : 'Otto Auditor'),
      // The second pair of eyes: a reviewing archivist and a second approving supervisor.
      reviewer: person('archivist', zh ? '钱复核' : 'Rita Reviewer', 'reviewer'),
      supervisor2: person('supervisor', zh ? '孙主管' : 'Sam Second', 'supervisor2'),
    },
    location: {
      storeroom: `SR-${tag}`,
      storeroomName: zh ? `${tag} 号库房` : `Basement store ${tag}`,
      shelf: `S-${tag}`,
      box: `B-${tag}`,
    },
    category: {
      code: `K${tag.toUpperCase()}`,
      name: zh ? `企业客户合同 ${tag}` : `Corporate contracts ${tag}`,
      companyLabel: zh ? '公司名称' : 'Company name',
      phoneLabel: zh ? '联系电话' : 'Contact phone',
    },
    record: {
      title: zh ? `${tag} 授信合同` : `Credit agreement ${tag}`,
      // Filed with a typo, then corrected: the search finds the corrected name.
      companyTypo: zh ? `上海华新${tag}贸易有限公司` : `Hauxin ${tag} Trading Company Ltd`,
      company,
      companyFirstHalf: [...company].slice(0, Math.ceil([...company].length / 2)).join(''),
      phone,
      correction: zh ? '公司名称录入有误，按营业执照更正' : 'Company name mistyped at filing; corrected from the licence',
    },
    purposeView: zh
      ? '核对授信合同条款，处理客户投诉第 2026-118 号'
      : 'Checking the credit terms to answer customer complaint 2026-118',
    purposeBorrow: zh
      ? '外部审计需要查看纸质原件，审计结束后归还'
      : 'The external auditors need the paper original; returned after the audit',
    reviewedTitle: zh ? `${tag} 授信合同（补充协议）` : `Credit agreement ${tag} (with addendum)`,
    reviewReason: zh ? '补充协议已签署，更新题名' : 'Addendum signed; title updated to say so',
    destroyMethod: zh ? '碎纸机粉碎，电子文件加密销毁' : 'Cross-cut shredder; digital files crypto-shredded',
    revokeReason: zh ? '投诉已处理完毕，收回查看权限' : 'Complaint answered; access no longer needed',
    returnCondition: zh ? '完好无损' : 'Complete, no damage',
    pdfName: `contract-${tag}.pdf`,
  };
}

// ------------------------------------------------------------------ page checks

/** One language's run: its counters, the pages already checked, its errors. */
class Run {
  constructor(lang) {
    this.lang = lang;
    this.nn = 0;
    this.seen = new Set();
  }
}

function pathOf(page) {
  const u = new URL(page.url());
  return u.pathname + u.search;
}

/** Checks and photographs the page as it is now, once per `step` name in a run. */
async function checkPage(run, page, step) {
  if (run.seen.has(step)) return;
  run.seen.add(step);
  run.nn += 1;
  const name = `${run.lang}-${String(run.nn).padStart(2, '0')}-${slug(step)}`;
  await page.waitForLoadState('load');
  const row = {
    lang: run.lang,
    name,
    step,
    path: pathOf(page),
    axe: [],
    width390: null,
    htmlLang: null,
    style: [],
    jsErrors: page.jsErrors.splice(0),
    problems: [],
  };
  try {
    await page.evaluate(AXE_SOURCE);
    row.axe = await page.evaluate(async () => {
      // eslint-disable-next-line no-undef
      const r = await axe.run(document, { resultTypes: ['violations'] });
      return r.violations
        .filter((v) => v.impact === 'serious' || v.impact === 'critical')
        .map((v) => ({
          id: v.id,
          impact: v.impact,
          help: v.help,
          nodes: v.nodes.slice(0, 8).map((n) => ({
            target: n.target.join(' '),
            html: n.html.slice(0, 160),
          })),
          more: Math.max(0, v.nodes.length - 8),
        }));
    });
    row.htmlLang = await page.evaluate(() => document.documentElement.getAttribute('lang'));
    await page.screenshot({ path: path.join(SCREENSHOT_DIR, `${name}.png`), fullPage: true });
    row.style = await styleProblems(page);
    const wide = page.viewportSize() || WIDE;
    await page.setViewportSize({ width: NARROW, height: 844 });
    row.width390 = await page.evaluate(() => document.documentElement.scrollWidth);
    await page.screenshot({ path: path.join(SCREENSHOT_DIR, `${name}-${NARROW}.png`), fullPage: true });
    await page.setViewportSize(wide);
  } catch (e) {
    row.problems.push(`the page could not be checked: ${e.message.split('\n')[0]}`);
  }
  if (row.axe.length) {
    row.problems.push(`axe: ${row.axe.map((v) => `${v.id} (${v.impact})`).join(', ')}`);
  }
  for (const p of row.style || []) row.problems.push(p);
  if (row.width390 !== null && row.width390 > NARROW) {
    row.problems.push(`scrolls sideways at ${NARROW} px: the document is ${row.width390} px wide`);
  }
  const want = run.lang.toLowerCase();
  const got = (row.htmlLang || '').toLowerCase();
  if (!(got === want || got === want.split('-')[0] || want === got.split('-')[0])) {
    row.problems.push(`<html lang="${row.htmlLang ?? ''}"> where the browser asked for ${run.lang}`);
  }
  if (row.jsErrors.length) row.problems.push(`script errors: ${row.jsErrors.join(' | ')}`);
  checks.push(row);
}

/** What axe does not see: the keyboard focus must be visible (the first Tab stop shows an
 *  outline of at least 2 px), and the borders of text fields must keep 3:1 contrast against
 *  what is behind them (WCAG 1.4.11). */
async function styleProblems(page) {
  await page.keyboard.press('Tab');
  const problems = await page.evaluate(() => {
    const out = [];
    const rgb = (c) => (c.match(/[\d.]+/g) || []).map(Number);
    const lum = ([r, g, b]) => {
      const f = (v) => ((v /= 255) <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4);
      return 0.2126 * f(r) + 0.7152 * f(g) + 0.0722 * f(b);
    };
    const ratio = (a, b) => {
      const [x, y] = [lum(a), lum(b)].sort((p, q) => q - p);
      return (x + 0.05) / (y + 0.05);
    };
    const background = (el) => {
      for (let n = el.parentElement; n; n = n.parentElement) {
        const c = rgb(getComputedStyle(n).backgroundColor);
        if (c.length >= 3 && (c.length === 3 || c[3] > 0.5)) return c.slice(0, 3);
      }
      return [255, 255, 255];
    };
    const focused = document.activeElement;
    if (focused && focused !== document.body) {
      const st = getComputedStyle(focused);
      const outline = st.outlineStyle !== 'none' && parseFloat(st.outlineWidth) >= 2;
      if (!outline && st.boxShadow === 'none') {
        out.push(`no visible focus on ${focused.tagName.toLowerCase()}${focused.getAttribute('href') ? `[href="${focused.getAttribute('href')}"]` : ''}`);
      }
      focused.blur();
    }
    const fields = document.querySelectorAll(
      'input:not([type=hidden]):not([type=checkbox]):not([type=radio]):not([type=file]), select, textarea',
    );
    const weak = new Set();
    for (const el of fields) {
      if (!el.offsetParent) continue;
      const st = getComputedStyle(el);
      if (parseFloat(st.borderBottomWidth) === 0) continue;
      const r = ratio(rgb(st.borderBottomColor).slice(0, 3), background(el));
      if (r < 3) weak.add(`${el.tagName.toLowerCase()}[name="${el.name}"] ${r.toFixed(2)}:1`);
    }
    if (weak.size) out.push(`field borders under 3:1: ${[...weak].slice(0, 5).join(', ')}`);
    return out;
  });
  return problems;
}

// ------------------------------------------------------------------ browsing helpers

/** Text of the page's error message, if it shows one (for failure messages only). */
async function errorText(page) {
  const e = page.locator('.error, [role="alert"]').first();
  if ((await e.count()) === 0) return '';
  return (await e.innerText()).trim().slice(0, 300);
}

/** Opens `target` (a path) as a person typing the address would, checks the answer's
 *  status and the page. */
async function visit(run, page, target, step, { status = 200 } = {}) {
  const resp = await page.goto(BASE_URL + target, { waitUntil: 'load' });
  const got = resp ? resp.status() : 0;
  if (got !== status) {
    throw new StoryError(`${target} answered ${got}, expected ${status} ${await errorText(page)}`);
  }
  if (step) await checkPage(run, page, step);
  return resp;
}

/** Follows the first link whose `href` is `href` (or matches the CSS attribute selector
 *  `sel`), as a click. */
async function follow(run, page, sel, step) {
  const link = page.locator(sel.startsWith('a[') ? sel : `a[href="${sel}"]`).first();
  if ((await link.count()) === 0) {
    throw new StoryError(`no link ${sel} on ${pathOf(page)}`);
  }
  const [resp] = await Promise.all([page.waitForNavigation({ waitUntil: 'load' }), link.click()]);
  const got = resp ? resp.status() : 0;
  if (got >= 400) throw new StoryError(`${sel} answered ${got} ${await errorText(page)}`);
  if (step) await checkPage(run, page, step);
  return resp;
}

/** The form whose `action` is `action` (a path), optionally the one holding `has`. */
function form(page, action, has) {
  let f = page.locator(`form[action="${action}"]`);
  if (has) f = f.filter({ has: page.locator(has) });
  return f.first();
}

/** Fills the named controls of a form: text, select (by value), checkbox (boolean); a key
 *  `name=value` names the checkbox of that value among several of one name. */
async function fill(f, values) {
  for (const [key, value] of Object.entries(values)) {
    const [name, choice] = key.split('=');
    const sel = choice === undefined ? `[name="${name}"]` : `[name="${name}"][value="${choice}"]`;
    const control = f.locator(sel).first();
    if ((await control.count()) === 0) throw new StoryError(`the form has no control ${sel}`);
    const tag = await control.evaluate((el) => el.tagName.toLowerCase());
    const type = (await control.getAttribute('type')) || '';
    if (tag === 'select') await control.selectOption(String(value));
    else if (type === 'checkbox') await control.setChecked(Boolean(value));
    else await control.fill(String(value));
  }
}

/** Fills and sends a form with its submit button; fails on an error answer unless
 *  `okStatus` says otherwise. */
async function submit(run, page, f, values, step, { okStatus = (s) => s < 400 } = {}) {
  if ((await f.count()) === 0) throw new StoryError(`form not found on ${pathOf(page)}`);
  const action = await f.getAttribute('action');
  await fill(f, values);
  const button = f.locator('button[type="submit"], input[type="submit"]').first();
  const [resp] = await Promise.all([page.waitForNavigation({ waitUntil: 'load' }), button.click()]);
  const got = resp ? resp.status() : 0;
  if (!okStatus(got)) {
    const shot = path.join(SCREENSHOT_DIR, `${run.lang}-failed-${slug(step || action)}.png`);
    await page.screenshot({ path: shot, fullPage: true }).catch(() => {});
    throw new StoryError(`sending ${action} answered ${got}: ${await errorText(page)}`);
  }
  if (step) await checkPage(run, page, step);
  return resp;
}

function expectPath(page, re, what) {
  const p = new URL(page.url()).pathname;
  const m = p.match(re);
  if (!m) throw new StoryError(`${what}: landed on ${p}`);
  return m;
}

async function expectLink(page, href, what) {
  if ((await page.locator(`a[href="${href}"]`).count()) === 0) {
    throw new StoryError(`${what}: no link to ${href} on ${pathOf(page)}`);
  }
}

async function expectText(page, text, what) {
  const body = await page.locator('body').innerText();
  if (!body.includes(text)) throw new StoryError(`${what}: "${text}" not on ${pathOf(page)}`);
}

/** `text` must not be in the page's HTML (or, with `shown`, in what it shows: a search
 *  form keeps what was typed into it). */
async function expectNoText(page, text, what, { shown = false } = {}) {
  const body = shown ? await page.locator('body').innerText() : await page.content();
  if (body.includes(text)) throw new StoryError(`${what}: "${text}" is on ${pathOf(page)}`);
}

// ------------------------------------------------------------------ sessions

/** A person's own browser (cookies apart from everyone else's) in the run's language,
 *  signed in; a one-time password is replaced on the password page first. */
async function signIn(browser, run, who) {
  const ctx = await browser.newContext({
    locale: run.lang,
    viewport: WIDE,
    timezoneId: 'Asia/Shanghai',
  });
  if (LOCAL_STYLE) {
    await ctx.route(`${BASE_URL}/static/style.css`, (route) =>
      route.fulfill({ status: 200, contentType: 'text/css', body: LOCAL_STYLE }),
    );
  }
  ctx.setDefaultTimeout(TIMEOUT_MS);
  ctx.setDefaultNavigationTimeout(TIMEOUT_MS);
  const page = await ctx.newPage();
  page.jsErrors = [];
  page.on('pageerror', (e) => page.jsErrors.push(String(e.message).split('\n')[0]));
  await visit(run, page, '/login', 'sign-in');
  await passwordStep(run, page, who);
  if (new URL(page.url()).pathname === '/account/password') {
    await checkPage(run, page, 'first-sign-in-password');
    await submit(
      run,
      page,
      form(page, '/account/password'),
      {
        current_password: who.password,
        new_password: who.newPassword,
        confirm_password: who.newPassword,
      },
      null,
    );
    who.password = who.newPassword;
  }
  // Supervisors, auditors and administrators must set up two-factor sign-in first (the
  // shipped default): enrol, then sign out and in again with a code.
  if (new URL(page.url()).pathname === '/account/totp') {
    await enrolSecondFactor(run, page, who);
    await signInAgainWithCode(run, page, who);
  }
  expectPath(page, /^\/$/, `${who.username} signing in`);
  await checkPage(run, page, `home-${who.role}`);
  return { ctx, page, who };
}

// ------------------------------------------------------------------ steps

/** The archivist registers a storeroom (with a name), a shelf in it and a box on the
 *  shelf, on the register pages; each lands back on its parent with a confirmation. */
async function registerLocation(run, archivist, loc) {
  const { page } = archivist;
  await follow(run, page, '/locations', 'location-register');
  await submit(run, page, form(page, '/locations'), { code: loc.storeroom, name: loc.storeroomName }, 'storeroom-registered');
  const [, storeroom] = expectPath(page, /^\/locations\/storerooms\/([0-9a-f-]{36})$/, 'registering the storeroom');
  await expectText(page, loc.storeroomName, "the storeroom's name");
  await submit(run, page, form(page, `/locations/storerooms/${storeroom}/shelves`), { code: loc.shelf }, 'shelf-registered');
  await expectText(page, loc.shelf, 'the new shelf');
  await follow(run, page, 'a[href^="/locations/shelves/"]', 'shelf');
  const [, shelf] = expectPath(page, /^\/locations\/shelves\/([0-9a-f-]{36})$/, 'opening the shelf');
  await submit(run, page, form(page, `/locations/shelves/${shelf}/boxes`), { code: loc.box }, 'box-registered');
  await expectText(page, loc.box, 'the new box');
  return { storeroom, shelf };
}

/** The supervisor's start page lists the request waiting for them (and the navigation
 *  counts it); the supervisor opens it from there. */
async function homeShowsQueue(run, supervisor, requestId) {
  const { page } = supervisor;
  await visit(run, page, '/', 'home-supervisor-queue');
  const badge = page.locator('a[href="/approvals"] .badge').first();
  if ((await badge.count()) === 0 || Number((await badge.innerText()).trim()) < 1) {
    throw new StoryError('the navigation does not count the waiting request');
  }
  await follow(run, page, `/requests/${requestId}`, 'request-details');
}

/** The viewer at 300 % (chosen in its zoom list, applied without reloading): the page is
 *  three times as wide, and scrolling to the left end shows its left edge, nothing cut off
 *  left of the scroll origin. */
async function zoomToLeftEdge(run, employee) {
  const { page } = employee;
  const before = page.url();
  await page.selectOption('#zoom', '300');
  if (page.url().split('?')[0] !== before.split('?')[0]) throw new StoryError('zooming left the viewer');
  const img = page.locator('#page-1');
  await img.scrollIntoViewIfNeeded();
  await page.waitForFunction((el) => el.complete && el.naturalWidth > 0 && el.getBoundingClientRect().width > 1600, await img.elementHandle());
  // Scroll every scrollable ancestor and the document to their left end, then the image's
  // left edge must be at or right of the viewport's left edge, inside its scroll box.
  const m = await img.evaluate((el) => {
    for (let n = el.parentElement; n; n = n.parentElement) n.scrollLeft = 0;
    window.scrollTo(0, window.scrollY);
    const r = el.getBoundingClientRect();
    const box = document.getElementById('pages').getBoundingClientRect();
    return { left: r.left, boxLeft: box.left, width: r.width };
  });
  await checkPage(run, page, 'viewer-zoom-300');
  if (m.left < m.boxLeft - 1 || m.left < -1) {
    throw new StoryError(`at 300 % the page's left edge cannot be reached: it stays ${Math.round(m.boxLeft - m.left)} px left of the view`);
  }
  // And the right edge can be scrolled to.
  const right = await img.evaluate((el) => {
    const box = document.getElementById('pages');
    box.scrollLeft = box.scrollWidth;
    return box.getBoundingClientRect().right - el.getBoundingClientRect().right;
  });
  if (right < -1) throw new StoryError(`at 300 % the page's right edge stays ${Math.round(-right)} px out of reach`);
}

/** Goes to page 3 with the viewer's go-to-page field: page 3 comes to the top of the view
 *  and the viewer says so. */
async function goToPage3(run, employee) {
  const { page } = employee;
  await page.fill('#page-go', '3');
  await page.click('#page-go-button');
  await page.waitForFunction(() => {
    const img = document.getElementById('page-3');
    const box = document.getElementById('pages').getBoundingClientRect();
    const r = img && img.getBoundingClientRect();
    return r && r.top >= box.top - 20 && r.top < box.top + box.height / 3 && location.hash === '#page-3';
  });
  const third = page.locator('#page-3');
  await page.waitForFunction((el) => el.complete && el.naturalWidth > 0, await third.elementHandle());
  await checkPage(run, page, 'viewer-page-3');
}

/** The auditor verifies the hash chain from the audit page: the answer says it is intact. */
async function verifyChainInBrowser(run, auditor) {
  const { page } = auditor;
  await visit(run, page, '/audit');
  await submit(run, page, form(page, '/audit/verify'), {}, 'audit-chain-verified');
  const said = page.locator('.flash').first();
  if ((await said.count()) === 0) throw new StoryError('verifying the chain showed no result');
  const text = await said.innerText();
  if (!(run.lang.startsWith('zh') ? text.includes('审计链完整') : text.includes('intact'))) {
    throw new StoryError(`verifying the chain: ${text}`);
  }
}

// ------------------------------------------------------------------ the stories

/** Runs one step of a story; a failure is recorded and ends the run's stories, except for
 *  a step the later ones do not build on (`alone`), after which the stories go on. */
async function step(run, name, fn, { alone = false } = {}) {
  try {
    return await fn();
  } catch (e) {
    const message = e instanceof StoryError ? e.message : String(e.stack || e).split('\n').slice(0, 3).join(' ');
    storyFailures.push({ lang: run.lang, step: name, message });
    if (!alone) throw e;
    return undefined;
  }
}

async function stories(browser, lang) {
  const run = new Run(lang);
  const c = cast(lang);
  const { people: p, record: rec, location: loc } = c;
  const sessions = [];
  const open = async (who) => {
    const s = await signIn(browser, run, who);
    sessions.push(s);
    return s;
  };
  try {
    // The administrator creates the accounts, all in one department.
    const adm = await step(run, 'administrator signs in', () => open(admin));
    await step(run, 'administrator creates the accounts', async () => {
      for (const who of Object.values(p)) {
        await visit(run, adm.page, '/admin/users', 'accounts');
        await submit(
          run,
          adm.page,
          form(adm.page, '/admin/users'),
          {
            username: who.username,
            display_name: who.display,
            department: c.department,
            [`roles=${who.role}`]: true,
            password: who.password,
          },
          null,
        );
        expectPath(adm.page, /^\/admin\/users\/[0-9a-f-]{36}$/, `creating ${who.username}`);
        await checkPage(run, adm.page, 'account-created');
        await expectText(adm.page, who.username, 'the new account');
        const dept = adm.page.locator('input[name="department"]').first();
        if ((await dept.count()) === 0 || (await dept.inputValue()) !== c.department) {
          throw new StoryError(`${who.username}: the department is not ${c.department} on the account's page`);
        }
      }
      await visit(run, adm.page, '/admin/users');
      for (const who of Object.values(p)) await expectText(adm.page, who.username, 'the accounts list');
    });

    await step(run, 'administrator looks at the integrity scrub', () =>
      visit(run, adm.page, '/admin/scrub', 'integrity-scrub'),
    { alone: true });

    await step(run, 'administrator holds the access review', async () => {
      await visit(run, adm.page, '/admin/access-review', 'access-review');
      for (const who of Object.values(p)) await expectText(adm.page, who.username, 'the access review');
    }, { alone: true });

    // The archivist registers a place, defines a category, files, uploads and corrects.
    const arc = await step(run, 'archivist signs in', () => open(p.archivist));
    await step(run, 'archivist registers a storeroom, shelf and box', () => registerLocation(run, arc, loc));
    const categoryId = await step(run, 'archivist defines a category', async () => {
      await visit(run, arc.page, '/categories', 'categories');
      await submit(
        run,
        arc.page,
        form(arc.page, '/categories'),
        {
          code: c.category.code,
          name: c.category.name,
          sensitivity: 'confidential',
          department: c.department,
          retention_years: 30,
        },
        'category-created',
      );
      const [, id] = expectPath(arc.page, /^\/categories\/([0-9a-f-]{36})$/, 'creating the category');
      await submit(
        run,
        arc.page,
        form(arc.page, `/categories/${id}`),
        {
          'fields[0].name': 'company_name',
          'fields[0].label': c.category.companyLabel,
          'fields[0].type': 'text',
          'fields[0].required': true,
          'fields[0].sensitive': 'no',
          'fields[1].name': 'phone',
          'fields[1].label': c.category.phoneLabel,
          'fields[1].type': 'phone',
          // Left as the vault proposes: a phone number is sensitive unless said otherwise.
          'fields[1].sensitive': '',
        },
        'category-fields',
      );
      const names = await arc.page.locator('input[name$=".name"]').evaluateAll((els) => els.map((e) => e.value));
      if (!names.includes('company_name') || !names.includes('phone')) {
        throw new StoryError(`the category's fields were not kept: ${names.join(', ')}`);
      }
      return id;
    });
    const recordId = await step(run, 'archivist files a record', async () => {
      await visit(run, arc.page, `/records/new?category=${categoryId}`, 'file-a-record');
      await submit(
        run,
        arc.page,
        form(arc.page, '/records'),
        {
          title: rec.title,
          'fields[company_name]': rec.companyTypo,
          'fields[phone]': rec.phone,
          storeroom: loc.storeroom,
          shelf: loc.shelf,
          box: loc.box,
        },
        'record-filed',
      );
      const [, id] = expectPath(arc.page, /^\/records\/([0-9a-f-]{36})$/, 'filing the record');
      return id;
    });
    await step(run, 'archivist uploads a 4-page PDF', async () => {
      const f = form(arc.page, `/api/v1/records/${recordId}/files`);
      if ((await f.count()) === 0) throw new StoryError('no upload form on the record page');
      await f.locator('input[type="file"]').setInputFiles({
        name: c.pdfName,
        mimeType: 'application/pdf',
        buffer: pdf(`Strongroom ${c.tag}`),
      });
      const uploaded = arc.page.waitForResponse(
        (r) => r.url().endsWith(`/records/${recordId}/files`) && r.request().method() === 'POST',
      );
      const reloaded = arc.page.waitForNavigation({ waitUntil: 'load' });
      reloaded.catch(() => {}); // awaited below, unless the upload fails first
      await f.locator('button[type="submit"]').first().click();
      const r = await uploaded;
      if (r.status() !== 201) throw new StoryError(`upload answered ${r.status()}: ${await r.text()}`);
      await reloaded;
      await expectText(arc.page, c.pdfName, 'the uploaded file');
      await checkPage(run, arc.page, 'record-with-file');
    });
    await step(run, 'archivist corrects the record', async () => {
      // The correction form is folded under the history until asked for.
      await arc.page.locator(`details:has(form[action="/records/${recordId}/edit"]) > summary`).click();
      await submit(
        run,
        arc.page,
        form(arc.page, `/records/${recordId}/edit`),
        { 'fields[company_name]': rec.company, reason: rec.correction },
        'record-corrected',
      );
      expectPath(arc.page, new RegExp(`^/records/${recordId}$`), 'correcting the record');
      await expectText(arc.page, rec.company, 'the corrected company name');
    });

    // Review before change: the category is put under review; a correction waits as a
    // proposal until a second archivist approves it on the reviews page.
    const rev = await step(run, 'reviewer signs in', () => open(p.reviewer));
    await step(run, 'a correction under review waits for a second archivist', async () => {
      await visit(run, arc.page, `/categories/${categoryId}`);
      await submit(run, arc.page, form(arc.page, `/categories/${categoryId}`), { review: true }, 'category-under-review');
      if (!(await arc.page.locator('input[name="review"]').first().isChecked())) {
        throw new StoryError('the category is not under review after saving it so');
      }
      await visit(run, arc.page, `/records/${recordId}`);
      await arc.page.locator(`details:has(form[action="/records/${recordId}/edit"]) > summary`).click();
      await submit(
        run,
        arc.page,
        form(arc.page, `/records/${recordId}/edit`),
        { title: c.reviewedTitle, reason: c.reviewReason },
        'correction-proposed',
      );
      expectPath(arc.page, new RegExp(`^/records/${recordId}$`), 'proposing the correction');
      await expectNoText(arc.page, c.reviewedTitle, 'the proposed title in effect before review', { shown: true });
      // The proposer sees it waiting and cannot approve it.
      await visit(run, arc.page, '/reviews', 'reviews-own');
      await expectText(arc.page, c.reviewedTitle, 'the proposal on its proposer\'s reviews page');
      if ((await arc.page.locator('form[action$="/approve"]').count()) > 0) {
        throw new StoryError('the proposer is offered to approve their own proposal');
      }
      await visit(run, rev.page, '/reviews', 'reviews-pending');
      await expectText(rev.page, c.reviewedTitle, 'the proposal on the reviewer\'s page');
      const approve = rev.page.locator('form[action^="/reviews/"][action$="/approve"]').first();
      await submit(run, rev.page, approve, {}, 'proposal-approved');
      await visit(run, arc.page, `/records/${recordId}`, 'record-reviewed');
      await expectText(arc.page, c.reviewedTitle, 'the approved title on the record');
      await expectText(arc.page, p.reviewer.username, 'the reviewer in the record\'s history');
      // A second correction, sent by mistake, is withdrawn by its proposer.
      await arc.page.locator(`details:has(form[action="/records/${recordId}/edit"]) > summary`).click();
      await submit(
        run,
        arc.page,
        form(arc.page, `/records/${recordId}/edit`),
        { title: `${c.reviewedTitle} ?`, reason: c.reviewReason },
        null,
      );
      await visit(run, arc.page, '/reviews');
      await submit(run, arc.page, arc.page.locator('form[action$="/withdraw"]').first(), {}, 'proposal-withdrawn');
      if ((await arc.page.locator('form[action$="/withdraw"]').count()) > 0) {
        throw new StoryError('the withdrawn proposal is still waiting');
      }
    });

    // The employee finds the record (masked) and asks to view it.
    const emp = await step(run, 'employee signs in', () => open(p.employee));
    const viewRequest = await step(run, 'employee finds the record and requests a view', async () => {
      await visit(run, emp.page, '/search', 'search');
      await submit(run, emp.page, form(emp.page, '/search'), { q: rec.companyFirstHalf }, 'search-by-name');
      await expectLink(emp.page, `/records/${recordId}`, `searching "${rec.companyFirstHalf}"`);
      await visit(run, emp.page, '/search');
      await submit(run, emp.page, form(emp.page, '/search'), { phone: rec.phone }, 'search-by-phone');
      await expectLink(emp.page, `/records/${recordId}`, 'searching the phone number');
      await expectNoText(emp.page, rec.phone, 'the phone shown unmasked in search results', { shown: true });
      await follow(run, emp.page, `/records/${recordId}`, 'record-masked');
      await expectNoText(emp.page, rec.phone, 'the phone shown unmasked without a grant');
      await submit(
        run,
        emp.page,
        form(emp.page, `/records/${recordId}/requests`),
        { kind: 'view', purpose: c.purposeView, duration_hours: 8 },
        'view-requested',
      );
      const [, id] = expectPath(emp.page, /^\/requests\/([0-9a-f-]{36})$/, 'requesting a view');
      return id;
    });

    // The supervisor approves.
    const sup = await step(run, 'supervisor signs in', () => open(p.supervisor));
    await step(run, 'supervisor approves the view from the home page', async () => {
      await homeShowsQueue(run, sup, viewRequest);
      await submit(run, sup.page, form(sup.page, `/requests/${viewRequest}/approve`), { comment: c.purposeView.slice(0, 20) }, 'view-approved');
      await visit(run, sup.page, '/approvals', 'approvals');
    });

    // The employee reads the pages in the viewer.
    const viewerPath = await step(run, 'employee reads the pages in the viewer', async () => {
      await visit(run, emp.page, '/requests', 'my-requests');
      await follow(run, emp.page, 'a[href^="/view/"]', 'viewer');
      expectPath(emp.page, /^\/view\/[0-9a-f-]{36}\/files\/[0-9a-f-]{36}$/, 'opening the viewer');
      const viewer = new URL(emp.page.url()).pathname;
      // Every page of the 4, each image loaded: scrolling through the pages shown, and on
      // to the next ones (rel="next") when the viewer shows fewer at a time.
      const read = new Set();
      for (let hops = 0; hops < 8; hops++) {
        const imgs = emp.page.locator('img[src*="/pages/"]');
        for (let i = 0; i < (await imgs.count()); i++) {
          const img = imgs.nth(i);
          await img.scrollIntoViewIfNeeded();
          await emp.page.waitForFunction((el) => el.complete && el.naturalWidth > 0, await img.elementHandle());
          read.add(Number((await img.getAttribute('src')).match(/\/pages\/(\d+)/)[1]));
        }
        if (read.size >= 4 || (await emp.page.locator('a[rel="next"]').count()) === 0) break;
        await follow(run, emp.page, 'a[rel="next"]', `viewer-next-${hops + 1}`);
      }
      if ([1, 2, 3, 4].some((n) => !read.has(n)) || read.size !== 4) {
        throw new StoryError(`the viewer showed pages ${[...read].join(', ')} of a 4-page PDF`);
      }
      if ((await emp.page.locator('a[download], a[href^="/api/"]').count()) > 0) {
        throw new StoryError('the view-only viewer offers a download link');
      }
      return viewer;
    });
    await step(run, 'employee goes to page 3', () => goToPage3(run, emp), { alone: true });
    await step(run, 'employee zooms to 300 % and reaches the left edge', () => zoomToLeftEdge(run, emp), { alone: true });

    // The supervisor revokes; the employee's open viewer is refused.
    await step(run, 'supervisor revokes the grant; the viewer is refused', async () => {
      const grantId = viewerPath.split('/')[2];
      await visit(run, sup.page, '/grants', 'active-grants');
      await submit(run, sup.page, form(sup.page, `/grants/${grantId}/revoke`), { reason: c.revokeReason }, 'grant-revoked');
      // The page image, asked with the employee's session (the viewer's own policy lets
      // no script of the page fetch anything).
      const image = (await emp.page.request.get(`${BASE_URL}${viewerPath}/pages/1?zoom=100`)).status();
      if (image < 400) throw new StoryError(`a page image still answers ${image} after the revocation`);
      const resp = await emp.page.reload({ waitUntil: 'load' });
      const got = resp ? resp.status() : 0;
      if (got < 400) throw new StoryError(`the viewer still answers ${got} after the revocation`);
      if ((await emp.page.locator('img[src*="/pages/"]').count()) > 0) {
        throw new StoryError('the refused viewer still shows page images');
      }
      // It says what happened and what to do: ask again on the record's page.
      await expectLink(emp.page, `/records/${recordId}#request`, 'the ended viewer');
      const said = await emp.page.locator('body').innerText();
      if (!said.includes(p.supervisor.username) && !said.includes(p.supervisor.display)) {
        throw new StoryError('the ended viewer does not say who revoked the grant');
      }
      await checkPage(run, emp.page, 'viewer-refused');
    });

    // The paper file: borrow request, approval, hand-out and return at the loans desk.
    await step(run, 'the archivist lends and takes back the paper file', async () => {
      await visit(run, emp.page, `/records/${recordId}`);
      await submit(
        run,
        emp.page,
        form(emp.page, `/records/${recordId}/requests`),
        { kind: 'borrow', purpose: c.purposeBorrow, duration_hours: 72 },
        'borrow-requested',
      );
      const [, borrow] = expectPath(emp.page, /^\/requests\/([0-9a-f-]{36})$/, 'requesting a loan');
      await visit(run, sup.page, '/approvals');
      await submit(run, sup.page, form(sup.page, `/requests/${borrow}/approve`), {}, 'borrow-approved');
      await visit(run, arc.page, '/loans', 'loans-desk');
      await submit(
        run,
        arc.page,
        form(arc.page, '/loans', `input[name="request"][value="${borrow}"]`),
        { due_date: today(2) },
        'loan-checked-out',
      );
      await submit(run, arc.page, form(arc.page, `/loans/${borrow}/return`), { condition: c.returnCondition }, 'loan-returned');
      if ((await form(arc.page, `/loans/${borrow}/return`).count()) > 0) {
        throw new StoryError('the file is still listed as out on loan after taking it back');
      }
      await visit(run, arc.page, `/records/${recordId}`, 'record-after-loan');
    });

    // Statistics: the period's figures, drawn and tabled, with the downloads.
    await step(run, 'supervisor reads the statistics', async () => {
      await visit(run, sup.page, `/stats?from=${today(-1)}&to=${today(1)}`, 'statistics');
      if ((await sup.page.locator('svg').count()) === 0) throw new StoryError('no chart on the statistics page');
      for (const sel of ['a[href^="/stats.csv"]', 'a[href^="/stats.xlsx"]']) {
        const link = sup.page.locator(sel).first();
        if ((await link.count()) === 0) throw new StoryError(`no download ${sel} on the statistics page`);
        const got = await sup.page.request.get(BASE_URL + (await link.getAttribute('href')));
        if (got.status() !== 200) throw new StoryError(`${sel} answered ${got.status()}`);
      }
    }, { alone: true });

    // Retention, legal hold and destruction: a hold placed and released on the record's
    // life-cycle page, the register, the retention list and a destroy request.
    await step(run, 'supervisor places and releases a legal hold', async () => {
      const reason = lang.startsWith('zh') ? `诉讼保全 ${c.tag}` : `litigation hold ${c.tag}`;
      await visit(run, sup.page, `/records/${recordId}/lifecycle`, 'record-lifecycle');
      await submit(run, sup.page, form(sup.page, `/records/${recordId}/hold`), { reason }, 'hold-placed');
      await expectText(sup.page, reason, 'the hold on the life-cycle page');
      await submit(run, sup.page, form(sup.page, `/records/${recordId}/hold/release`), {}, 'hold-released');
      // The whole category, from the retention page.
      await visit(run, sup.page, '/retention');
      await submit(run, sup.page, form(sup.page, '/retention/holds'), { category: categoryId, reason: `${reason} *` }, 'category-hold-placed');
      await expectText(sup.page, `${reason} *`, 'the category hold on the retention page');
      await submit(run, sup.page, form(sup.page, `/retention/holds/${categoryId}/release`), {}, 'category-hold-released');
      await expectNoText(sup.page, `${reason} *`, 'the released category hold', { shown: true });
      await visit(run, sup.page, '/destructions', 'destruction-register');
    }, { alone: true });
    await step(run, 'archivist asks for the destruction of the record', async () => {
      await visit(run, arc.page, '/retention', 'retention-list');
      await visit(run, arc.page, `/records/${recordId}/lifecycle`);
      await submit(
        run,
        arc.page,
        form(arc.page, `/records/${recordId}/destroy-request`),
        { reason_type: 'erasure', purpose: c.purposeBorrow },
        'destroy-requested',
      );
      expectPath(arc.page, new RegExp(`^/records/${recordId}/lifecycle$`), 'requesting the destruction');
      const asked = arc.page.locator('#destroy a[href^="/requests/"]').first();
      if ((await asked.count()) === 0) throw new StoryError('the destroy request is not listed on the life-cycle page');
      const destroyRequest = (await asked.getAttribute('href')).split('/')[2];
      // Two distinct supervisors approve; the archivist carries it out before a witness.
      const sup2 = await open(p.supervisor2);
      for (const [who, shot] of [[sup, 'destroy-approved-1'], [sup2, 'destroy-approved-2']]) {
        await visit(run, who.page, `/requests/${destroyRequest}`);
        await submit(run, who.page, form(who.page, `/requests/${destroyRequest}/approve`), {}, shot);
      }
      await visit(run, arc.page, `/records/${recordId}/lifecycle`);
      await submit(
        run,
        arc.page,
        form(arc.page, `/records/${recordId}/destroy`),
        { request_id: destroyRequest, witness: p.supervisor.username, method: c.destroyMethod },
        'record-destroyed',
      );
      const certificate = arc.page.locator('a[href$="/certificate.pdf"]').first();
      if ((await certificate.count()) === 0) throw new StoryError('no certificate after the destruction');
      const pdfAnswer = await arc.page.request.get(BASE_URL + (await certificate.getAttribute('href')));
      const body = await pdfAnswer.body();
      if (pdfAnswer.status() !== 200 || body.subarray(0, 5).toString('latin1') !== '%PDF-') {
        throw new StoryError(`the certificate answered ${pdfAnswer.status()}, not a PDF`);
      }
      await visit(run, sup.page, '/destructions', 'destruction-registered');
      await expectText(sup.page, c.destroyMethod, 'the destruction in the register');
    }, { alone: true });

    // A leaver: the employee, with a lookup still pending, is disabled; the administrator
    // sees what they hold, leaves a handover note, and the request is cancelled.
    await step(run, 'administrator disables a leaver', async () => {
      const held = await step(run, 'a record for the leaver', async () => {
        await visit(run, arc.page, `/records/new?category=${categoryId}`);
        await submit(
          run,
          arc.page,
          form(arc.page, '/records'),
          { title: `${rec.title} II`, 'fields[company_name]': rec.company, 'fields[phone]': rec.phone },
          null,
        );
        // Filed under review: a second archivist approves the new record.
        await visit(run, rev.page, '/reviews');
        await submit(run, rev.page, rev.page.locator('form[action^="/reviews/"][action$="/approve"]').first(), {}, null);
        await visit(run, rev.page, '/reviews?state=approved');
        // Oldest first: the new record's proposal is the last one decided.
        const link = rev.page.locator('section.card p > a[href^="/records/"]').last();
        return (await link.getAttribute('href')).split('/')[2];
      });
      await visit(run, emp.page, `/records/${held}`);
      await submit(
        run,
        emp.page,
        form(emp.page, `/records/${held}/requests`),
        { kind: 'lookup', purpose: c.purposeView, duration_hours: 8 },
        null,
      );
      const [, lookup] = expectPath(emp.page, /^\/requests\/([0-9a-f-]{36})$/, 'requesting a lookup');
      await visit(run, adm.page, '/admin/users');
      await follow(run, adm.page, `a[href^="/admin/users/"]:text-is("${p.employee.username}")`, null);
      const [, userId] = expectPath(adm.page, /^\/admin\/users\/([0-9a-f-]{36})$/, 'opening the leaver');
      await submit(run, adm.page, form(adm.page, `/admin/users/${userId}/disable`), {}, 'leaver-holdings');
      const listed = await adm.page.locator('[role="alertdialog"] li').count();
      if (listed !== 1) throw new StoryError(`${listed} holdings listed for a leaver with one pending request`);
      await submit(
        run,
        adm.page,
        form(adm.page, `/admin/users/${userId}/disable`, 'input[name="confirm"]'),
        { handover_note: c.revokeReason },
        'leaver-disabled',
      );
      const answer = await emp.page.goto(`${BASE_URL}/requests/${lookup}`, { waitUntil: 'load' });
      if (!new URL(emp.page.url()).pathname.startsWith('/login') && answer && answer.status() < 400) {
        throw new StoryError(`the leaver's session still answers ${answer.status()}`);
      }
      await visit(run, sup.page, `/requests/${lookup}`);
      if ((await form(sup.page, `/requests/${lookup}/approve`).count()) > 0) {
        throw new StoryError('the leaver\'s request can still be approved');
      }
    }, { alone: true });

    // The auditor reads the trail and verifies the chain.
    const aud = await step(run, 'auditor signs in', () => open(p.auditor));
    await step(run, 'auditor reads the statistics', () => visit(run, aud.page, '/stats', 'statistics-auditor'), { alone: true });
    await step(run, 'auditor opens the audit trail', async () => {
      await visit(run, aud.page, '/audit', 'audit-trail');
      // Each person's steps, found by filtering on the person (the action cell carries the
      // event's code as its title; a viewing session is one row).
      const expected = [
        [p.archivist.username, ['register.create', 'category.create', 'record.create', 'file.upload', 'record.update', 'loan.checkout', 'loan.return']],
        [p.employee.username, ['record.search', 'request.create', 'file.view.page']],
        [p.supervisor.username, ['request.approve', 'grant.revoke']],
      ];
      for (const [person, actions] of expected) {
        await visit(run, aud.page, '/audit');
        await submit(run, aud.page, form(aud.page, '/audit'), { person }, 'audit-filtered');
        const seen = await aud.page.locator('table.audit tbody td[title]').evaluateAll((tds) => tds.map((td) => td.title));
        const missing = actions.filter((a) => !seen.includes(a));
        if (missing.length) throw new StoryError(`the trail of ${person} lacks ${missing.join(', ')} (has ${[...new Set(seen)].join(', ')})`);
        await expectNoText(aud.page, rec.phone, 'a phone number in the audit trail');
      }
    });
    await step(run, 'auditor verifies the chain', () => verifyChainInBrowser(run, aud), { alone: true });
  } catch (e) {
    if (!(e instanceof StoryError)) console.error(e);
  } finally {
    for (const s of sessions) await s.ctx.close().catch(() => {});
  }
}

// ------------------------------------------------------------------ report

function table(rows, headers) {
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => String(r[i]).length)));
  const line = (cells) => cells.map((c, i) => String(c).padEnd(widths[i])).join(' | ');
  return [line(headers), widths.map((w) => '-'.repeat(w)).join('-|-'), ...rows.map(line)].join('\n');
}

function report() {
  console.log('\nPages checked');
  console.log(
    table(
      checks.map((c) => [
        c.name,
        c.path.length > 60 ? `${c.path.slice(0, 57)}...` : c.path,
        c.axe.length ? c.axe.map((v) => v.id).join(',') : '0',
        c.width390 === null ? '?' : c.width390,
        c.htmlLang ?? '',
        c.style.length ? 'FAIL' : 'ok',
        c.problems.length ? 'FAIL' : 'ok',
      ]),
      ['page', 'path', 'axe serious/critical', `width at ${NARROW}`, 'lang', 'focus, borders', ''],
    ),
  );
  const failedChecks = checks.filter((c) => c.problems.length);
  if (failedChecks.length) {
    console.log('\nPage check failures');
    for (const c of failedChecks) {
      console.log(`- ${c.name} (${c.path})`);
      for (const p of c.problems) console.log(`    ${p}`);
      for (const v of c.axe) {
        console.log(`    axe ${v.id} [${v.impact}] ${v.help}`);
        for (const n of v.nodes) console.log(`      ${n.target}  ${n.html}`);
        if (v.more) console.log(`      … and ${v.more} more`);
      }
    }
  }
  if (storyFailures.length) {
    console.log('\nStory failures');
    for (const f of storyFailures) console.log(`- [${f.lang}] ${f.step}: ${f.message}`);
  }
  writeFileSync(
    path.join(SCREENSHOT_DIR, 'report.json'),
    JSON.stringify({ checks, storyFailures }, null, 2),
  );
  console.log(
    `\n${checks.length} pages checked, ${failedChecks.length} with problems; ` +
      `${storyFailures.length} story failures; screenshots in ${SCREENSHOT_DIR}`,
  );
  return { failedChecks: failedChecks.length, storyFailures: storyFailures.length };
}

// ------------------------------------------------------------------ main

mkdirSync(SCREENSHOT_DIR, { recursive: true });
const browser = await chromium.launch({
  executablePath: CHROMIUM,
  headless: true,
  // Root (CI, containers) cannot use Chromium's sandbox.
  args: process.getuid && process.getuid() === 0 ? ['--no-sandbox'] : [],
});
try {
  for (const lang of LANGS) {
    console.log(`== stories in ${lang}`);
    await stories(browser, lang);
  }
} finally {
  await browser.close();
}
const { failedChecks, storyFailures: broken } = report();
if (broken > 0) process.exit(1);
if (failedChecks > 0) {
  if (REPORT_ONLY) console.log('REPORT_ONLY=1: page check failures reported, not failing');
  else process.exit(1);
}
