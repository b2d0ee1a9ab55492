// The openpersonalize console: one module, no build step, nothing loaded from elsewhere.
// Every fact it shows comes from the APIs boto3 calls (the control plane, the runtime,
// PutEvents) or from the server's read-only /console/api/ endpoints, each request signed
// with SigV4 here in the browser when the server asks for signatures (as boto3 signs them:
// signing name "personalize"). Data is always put on the page as text, never as HTML.

const SERVICE = 'personalize';
const enc = new TextEncoder();
const CREDENTIALS = 'opz-console-credentials';
const AUTH_ERRORS = new Set(['MissingAuthenticationTokenException', 'UnrecognizedClientException',
  'InvalidSignatureException']);
const SHOWN_METRICS = ['normalized_discounted_cumulative_gain_at_10', 'normalized_discounted_cumulative_gain_at_25',
  'mean_reciprocal_rank_at_25', 'precision_at_10', 'precision_at_25', 'coverage'];
const SERIES_COLOURS = {'this version': '#1f77b4', 'popularity (same split)': '#999999', 'parent version': '#ff7f0e'};
const DONE = new Set(['ACTIVE', 'CREATE FAILED', 'CREATE STOPPED', 'FAILED', 'COMPLETED']);
const POLL_MS = 1500;
const FEED_KEPT = 200;
const SVG = 'http://www.w3.org/2000/svg';

// ---------------------------------------------------------------- SigV4 (what serving/sigv4.py checks)

const hex = (buf) => [...new Uint8Array(buf)].map((b) => b.toString(16).padStart(2, '0')).join('');

async function sha256Hex(data) {
  return hex(await crypto.subtle.digest('SHA-256', typeof data === 'string' ? enc.encode(data) : data));
}

async function hmac(key, message) {
  const k = await crypto.subtle.importKey('raw', key, {name: 'HMAC', hash: 'SHA-256'}, false, ['sign']);
  return crypto.subtle.sign('HMAC', k, enc.encode(message));
}

/** RFC 3986 encoding, as every SigV4 signer encodes query keys, values and path segments. */
export function awsEncode(text) {
  return encodeURIComponent(text).replace(/[!'()*]/g, (c) => '%' + c.charCodeAt(0).toString(16).toUpperCase());
}

/** [[key, value], ...] as the query a signer sends: encoded, sorted (the canonical order). */
export function queryString(params) {
  return params.map(([k, v]) => [awsEncode(k), awsEncode(String(v))])
    .sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : a[1] < b[1] ? -1 : a[1] > b[1] ? 1 : 0))
    .map(([k, v]) => `${k}=${v}`).join('&');
}

/** "20260101T120000Z": the time format of x-amz-date. */
export function amzDate(date) {
  return date.toISOString().replace(/[-:]/g, '').replace(/\.\d{3}/, '');
}

/** The headers that sign a request: x-amz-date and Authorization, over host and x-amz-date.
 * `path` is sent as given (plain segments); `query` as queryString made it. */
export async function sign({method, host, path, query = '', body = '', region, accessKeyId, secret,
  date = new Date()}) {
  const stamp = amzDate(date);
  const day = stamp.slice(0, 8);
  const canonicalPath = path.split('/').map(awsEncode).join('/');
  const canonical = [method, canonicalPath, query, `host:${host}\nx-amz-date:${stamp}\n`, 'host;x-amz-date',
    await sha256Hex(body)].join('\n');
  const scope = `${day}/${region}/${SERVICE}/aws4_request`;
  const toSign = ['AWS4-HMAC-SHA256', stamp, scope, await sha256Hex(canonical)].join('\n');
  let key = await hmac(enc.encode('AWS4' + secret), day);
  for (const part of [region, SERVICE, 'aws4_request']) key = await hmac(key, part);
  const signature = hex(await hmac(key, toSign));
  return {'X-Amz-Date': stamp, Authorization: `AWS4-HMAC-SHA256 Credential=${accessKeyId}/${scope}, ` +
    `SignedHeaders=host;x-amz-date, Signature=${signature}`};
}

// ---------------------------------------------------------------- calls

class ApiError extends Error {
  constructor(type, message, status) {
    super(message);
    this.type = type;
    this.status = status;
  }
}

function credentials() {
  try {
    return JSON.parse(sessionStorage.getItem(CREDENTIALS) || 'null');
  } catch {
    return null;
  }
}

/** One request to this server, signed when the person signed in. A refusal of the signature
 * (or of its absence) brings up the sign-in form. */
async function call(path, {method = 'GET', params = [], body = '', headers = {}} = {}) {
  const query = queryString(params);
  const creds = credentials();
  const sent = {...headers};
  if (creds) {
    Object.assign(sent, await sign({method, host: location.host, path, query, body, region: creds.region,
      accessKeyId: creds.accessKeyId, secret: creds.secret}));
  }
  const response = await fetch(path + (query ? '?' + query : ''), {method, headers: sent,
    body: method === 'GET' ? undefined : body, credentials: 'omit', cache: 'no-store'});
  const text = await response.text();
  let data = {};
  try {
    data = text ? JSON.parse(text) : {};
  } catch {
    data = {message: text.slice(0, 200)};
  }
  if (!response.ok) {
    const type = data.__type || response.headers.get('x-amzn-ErrorType') || `HTTP ${response.status}`;
    const error = new ApiError(type, data.message || data.Message || type, response.status);
    if (response.status === 403 && AUTH_ERRORS.has(type)) showSignIn(error.message);
    throw error;
  }
  return data;
}

const control = (operation, input = {}) => call('/', {method: 'POST', body: JSON.stringify(input),
  headers: {'Content-Type': 'application/x-amz-json-1.1', 'X-Amz-Target': 'AmazonPersonalize.' + operation}});
const runtime = (path, input) => call(path, {method: 'POST', body: JSON.stringify(input),
  headers: {'Content-Type': 'application/json'}});
const consoleApi = (name, params) => call('/console/api/' + name, {params});

/** Every page of a List operation. */
async function listAll(operation, key, input = {}) {
  const out = [];
  let token;
  do {
    const page = await control(operation, {...input, ...(token ? {nextToken: token} : {})});
    out.push(...page[key]);
    token = page.nextToken;
  } while (token);
  return out;
}

// ---------------------------------------------------------------- building the page (as text)

function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else if (k === 'class') el.className = v;
    else el.setAttribute(k, v === true ? '' : v);
  }
  for (const child of children.flat()) {
    if (child === undefined || child === null || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

function s(tag, attrs = {}, ...children) {
  const el = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, String(v));
  for (const child of children.flat()) if (child) el.append(child instanceof Node ? child : document.createTextNode(child));
  return el;
}

const table = (head, rows, attrs = {}) => h('table', attrs, h('thead', {}, h('tr', {}, head.map((c) => h('th', {}, c)))),
  h('tbody', {}, rows.map((r) => h('tr', {}, r.map((c) => h('td', {}, c === null || c === undefined ? '' : c))))));
const when = (epoch) => (epoch ? new Date(epoch * 1000).toLocaleString() : '');
const short = (arn) => (arn || '').split('/').slice(1).join('/') || arn;
const number = (n) => (n === undefined || n === null ? '' : Number(n).toLocaleString());
const badge = (status) => h('span', {class: 'badge ' + (status || '').toLowerCase().replace(/\s+/g, '-')}, status);

function say(message, kind = 'info') {
  const el = document.getElementById('status');
  el.textContent = message;
  el.className = 'status ' + kind;
  el.hidden = !message;
}

function failed(panel, error) {
  panel.replaceChildren(h('p', {class: 'error'}, `${error.type || 'Error'}: ${error.message}`));
}

// ---------------------------------------------------------------- charts (inline SVG, interactive)

function tip(event, text) {
  const el = document.getElementById('tooltip');
  el.textContent = text;
  el.hidden = false;
  el.style.left = `${event.pageX + 12}px`;
  el.style.top = `${event.pageY + 12}px`;
}

function untip() {
  document.getElementById('tooltip').hidden = true;
}

/** Grouped horizontal bars, one group per metric, one bar per series; hovering a bar shows its
 * value (with this version's 95% interval, `margin`: half its width, by metric), clicking a
 * legend entry hides or shows its series. */
export function barChart(series, metrics, margin = {}, width = 760) {
  const hidden = new Set();
  const root = h('div', {class: 'chart bars'});
  const draw = () => {
    const shown = Object.entries(series).filter(([name]) => !hidden.has(name));
    const top = Math.max(1e-9, ...shown.flatMap(([, v]) => metrics.map((m) => v[m] || 0)));
    const row = 14, labelW = 300, groupH = row * Math.max(1, shown.length) + 10;
    const svg = s('svg', {width, height: groupH * metrics.length + 4, role: 'img',
      'aria-label': 'offline metrics by series'});
    metrics.forEach((metric, g) => {
      const y0 = g * groupH;
      svg.append(s('text', {x: 0, y: y0 + groupH / 2 + 4, class: 'label'}, metric));
      shown.forEach(([name, values], i) => {
        const v = values[metric] || 0;
        const w = ((width - labelW - 70) * v) / top;
        const y = y0 + i * row;
        const bar = s('rect', {x: labelW, y, width: Math.max(w, 0.5).toFixed(1), height: row - 2,
          fill: SERIES_COLOURS[name] || '#444', class: 'bar', 'data-series': name, 'data-metric': metric});
        const plusMinus = name === 'this version' && metric in margin ? ` ± ${margin[metric].toFixed(4)}` : '';
        bar.addEventListener('mousemove', (e) => tip(e, `${name}: ${metric} = ${v.toFixed(4)}${plusMinus}`));
        bar.addEventListener('mouseleave', untip);
        svg.append(bar, s('text', {x: labelW + w + 4, y: y + row - 4, class: 'value'}, v.toFixed(4)));
      });
    });
    const legend = h('div', {class: 'legend'}, Object.keys(series).map((name) => h('button', {
      type: 'button', class: 'series' + (hidden.has(name) ? ' off' : ''), 'aria-pressed': String(!hidden.has(name)),
      'data-series': name, onclick: () => { hidden.has(name) ? hidden.delete(name) : hidden.add(name); draw(); },
    }, h('span', {class: 'swatch', 'data-colour': name}), name)));
    legend.querySelectorAll('.swatch').forEach((el) => { el.style.background = SERIES_COLOURS[el.dataset.colour]; });
    root.replaceChildren(legend, svg);
  };
  draw();
  return root;
}

/** "+12.5%": how much better than popularity a metric is ('' where popularity has none). */
export function lift(value, baseline) {
  if (value === undefined || !baseline) return '';
  const pct = (100 * (value - baseline)) / baseline;
  return `${pct >= 0 ? '+' : ''}${pct.toFixed(1)}%`;
}

/** A line of (x, y) points with a dot per point that shows its value on hover. */
export function lineChart(points, {xLabel = 'epoch', yLabel = 'loss', width = 520, height = 220} = {}) {
  const pad = {l: 56, r: 16, t: 12, b: 36};
  const xs = points.map((p) => p[0]), ys = points.map((p) => p[1]);
  const [x0, x1] = [Math.min(...xs), Math.max(...xs)];
  let [y0, y1] = [Math.min(...ys), Math.max(...ys)];
  if (y0 === y1) { y0 -= 0.5; y1 += 0.5; }
  const X = (x) => pad.l + (x1 === x0 ? 0.5 : (x - x0) / (x1 - x0)) * (width - pad.l - pad.r);
  const Y = (y) => height - pad.b - ((y - y0) / (y1 - y0)) * (height - pad.t - pad.b);
  const svg = s('svg', {width, height, class: 'chart line', role: 'img', 'aria-label': `${yLabel} by ${xLabel}`});
  svg.append(s('line', {x1: pad.l, y1: height - pad.b, x2: width - pad.r, y2: height - pad.b, class: 'axis'}),
    s('line', {x1: pad.l, y1: pad.t, x2: pad.l, y2: height - pad.b, class: 'axis'}),
    s('text', {x: pad.l - 6, y: pad.t + 8, 'text-anchor': 'end', class: 'tick'}, y1.toFixed(3)),
    s('text', {x: pad.l - 6, y: height - pad.b, 'text-anchor': 'end', class: 'tick'}, y0.toFixed(3)),
    s('text', {x: (width + pad.l) / 2, y: height - 6, 'text-anchor': 'middle', class: 'tick'}, xLabel),
    s('polyline', {points: points.map(([x, y]) => `${X(x).toFixed(1)},${Y(y).toFixed(1)}`).join(' '),
      fill: 'none', stroke: '#1f77b4', 'stroke-width': 2}));
  for (const [x, y] of points) {
    const dot = s('circle', {cx: X(x).toFixed(1), cy: Y(y).toFixed(1), r: 4, fill: '#1f77b4', class: 'point'});
    dot.addEventListener('mousemove', (e) => tip(e, `${xLabel} ${x}: ${yLabel} ${y.toFixed(4)}`));
    dot.addEventListener('mouseleave', untip);
    svg.append(dot, s('text', {x: X(x).toFixed(1), y: height - pad.b + 14, 'text-anchor': 'middle', class: 'tick'},
      String(x)));
  }
  return svg;
}

/** Epoch losses a training in progress reports ("FULL epoch 2/5 loss 6.1234 ..."), once per epoch. */
export function curvePoint(message) {
  const m = /epoch (\d+)\/\d+ loss ([\d.]+)/.exec(message || '');
  return m && !/ \d+% /.test(message) ? [Number(m[1]), Number(m[2])] : null;
}

// ---------------------------------------------------------------- state

const state = {group: null, tab: 'datasets', timers: new Set(), titles: new Map(), liveCurves: new Map(),
  session: 'console-' + Math.random().toString(36).slice(2, 10), solutionsCache: null};

function every(ms, fn) {
  const id = setInterval(fn, ms);
  state.timers.add(id);
  return id;
}

function stopTimers() {
  for (const id of state.timers) clearInterval(id);
  state.timers.clear();
}

async function titlesOf(ids) {
  const group = state.group.datasetGroupArn;
  const missing = [...new Set(ids)].filter((id) => !state.titles.has(id));
  for (let i = 0; i < missing.length; i += 100) {
    const part = missing.slice(i, i + 100);
    const got = await consoleApi('titles', [['datasetGroupArn', group], ...part.map((id) => ['itemId', id])]);
    for (const id of part) state.titles.set(id, got.titles[id] || null);
  }
  return (id) => state.titles.get(id) || null;
}

const itemLabel = (title, id) => [h('span', {class: 'title'}, title(id) || `item ${id}`), ' ',
  h('span', {class: 'id'}, `(${id})`)];

async function solutionsOf(group) {
  const solutions = await listAll('ListSolutions', 'solutions', {datasetGroupArn: group});
  return Promise.all(solutions.map(async (summary) => {
    const solution = (await control('DescribeSolution', {solutionArn: summary.solutionArn})).solution;
    const versions = await listAll('ListSolutionVersions', 'solutionVersions', {solutionArn: summary.solutionArn});
    return {solution, versions};
  }));
}

async function campaignsOf(group) {
  const out = [];
  for (const {solution, versions} of await solutionsOf(group)) {
    for (const c of await listAll('ListCampaigns', 'campaigns', {solutionArn: solution.solutionArn})) {
      const campaign = (await control('DescribeCampaign', {campaignArn: c.campaignArn})).campaign;
      out.push({campaign, solution, versions});
    }
  }
  return out;
}

/** The version a campaign answers with: with syncWithLatestSolutionVersion its solution's newest
 * ACTIVE one (as serving/deployed.py picks it), else its own. */
export function servedVersion(campaign, versions) {
  if (campaign.campaignConfig && campaign.campaignConfig.syncWithLatestSolutionVersion) {
    const active = versions.filter((v) => v.status === 'ACTIVE')
      .sort((a, b) => (a.creationDateTime || 0) - (b.creationDateTime || 0));
    if (active.length) return active[active.length - 1].solutionVersionArn;
  }
  return campaign.solutionVersionArn;
}

// ---------------------------------------------------------------- panels

async function showDatasets(panel) {
  const group = state.group.datasetGroupArn;
  const datasets = await listAll('ListDatasets', 'datasets', {datasetGroupArn: group});
  if (!datasets.length) {
    panel.replaceChildren(h('p', {}, 'No datasets yet: CreateSchema, CreateDataset and an import job add them.'));
    return;
  }
  const cards = await Promise.all(datasets.map(async (summary) => {
    const dataset = (await control('DescribeDataset', {datasetArn: summary.datasetArn})).dataset;
    const [schema, facts, jobs] = await Promise.all([
      control('DescribeSchema', {schemaArn: dataset.schemaArn}).then((r) => r.schema),
      consoleApi('dataset', [['datasetArn', dataset.datasetArn]]),
      listAll('ListDatasetImportJobs', 'datasetImportJobs', {datasetArn: dataset.datasetArn})]);
    const fields = JSON.parse(schema.schema).fields || [];
    const last = jobs.sort((a, b) => (b.creationDateTime || 0) - (a.creationDateTime || 0))[0];
    return h('article', {class: 'card dataset', 'data-type': dataset.datasetType},
      h('h3', {}, `${dataset.datasetType} · ${dataset.name}`),
      h('dl', {class: 'facts'},
        h('dt', {}, 'rows'), h('dd', {class: 'rows'}, number(facts.rows)),
        h('dt', {}, 'status'), h('dd', {}, badge(dataset.status)),
        h('dt', {}, 'last import'), h('dd', {class: 'last-import'}, last ? [last.jobName, ' ', badge(last.status), ' ',
          when(last.lastUpdatedDateTime || last.creationDateTime)] : 'none'),
        h('dt', {}, 'schema'), h('dd', {}, schema.name)),
      h('details', {class: 'schema'}, h('summary', {}, `schema: ${fields.length} fields`),
        table(['field', 'type'], fields.map((f) => [f.name, JSON.stringify(f.type)]))),
      h('h4', {}, 'sample'),
      h('div', {class: 'scroll'}, table(facts.sample.columns, facts.sample.rows, {class: 'sample'})));
  }));
  panel.replaceChildren(...cards);
}

async function showJobs(panel) {
  const group = state.group.datasetGroupArn;
  const draw = async () => {
    const datasets = await listAll('ListDatasets', 'datasets', {datasetGroupArn: group});
    const rows = [];
    for (const d of datasets) {
      const imports = await listAll('ListDatasetImportJobs', 'datasetImportJobs', {datasetArn: d.datasetArn});
      const exports = await listAll('ListDatasetExportJobs', 'datasetExportJobs', {datasetArn: d.datasetArn});
      for (const j of imports) {
        const job = (await control('DescribeDatasetImportJob', {datasetImportJobArn: j.datasetImportJobArn}))
          .datasetImportJob;
        rows.push({kind: 'import', name: job.jobName, dataset: d.datasetType, job,
          where: (job.dataSource || {}).dataLocation});
      }
      for (const j of exports) {
        const job = (await control('DescribeDatasetExportJob', {datasetExportJobArn: j.datasetExportJobArn}))
          .datasetExportJob;
        rows.push({kind: 'export', name: job.jobName, dataset: d.datasetType, job,
          where: ((job.jobOutput || {}).s3DataDestination || {}).path});
      }
    }
    rows.sort((a, b) => (b.job.creationDateTime || 0) - (a.job.creationDateTime || 0));
    if (!rows.length) {
      panel.replaceChildren(h('p', {}, 'No import or export jobs yet.'));
      return true;
    }
    panel.replaceChildren(table(['kind', 'job', 'dataset', 'status', 'progress', 'location', 'updated'],
      rows.map(({kind, name, dataset, job, where}) => [kind, name, dataset, badge(job.status), progressOf(job), where,
        when(job.lastUpdatedDateTime)]), {class: 'jobs'}));
    return rows.every((r) => DONE.has(r.job.status));
  };
  if (!(await draw())) {
    const id = every(POLL_MS, async () => { if (await draw()) clearInterval(id); });
  }
}

function progressOf(job) {
  const p = job.progress || {};
  const done = DONE.has(job.status);
  const bar = h('progress', done ? {max: 1, value: job.status === 'ACTIVE' ? 1 : 0} : {});
  const words = [p.rowsDone !== undefined ? `${number(p.rowsDone)} rows` : '',
    p.rowsSkipped ? `${number(p.rowsSkipped)} skipped` : '', p.message || ''].filter(Boolean).join(', ');
  return h('span', {class: 'progress'}, bar, ' ', words, job.failureReason ? ` — ${job.failureReason}` : '');
}

async function showSolutions(panel) {
  const solutions = await solutionsOf(state.group.datasetGroupArn);
  if (!solutions.length) {
    panel.replaceChildren(h('p', {}, 'No solutions yet: CreateSolution, then CreateSolutionVersion trains one.'));
    return;
  }
  const detail = h('div', {class: 'version-detail'});
  const list = h('div', {class: 'solutions'}, solutions.map(({solution, versions}) => h('article', {class: 'card'},
    h('h3', {}, solution.name, ' ', h('span', {class: 'recipe'}, short(solution.recipeArn))),
    table(['version', 'mode', 'status', 'created', ''], versions.map((v) => [short(v.solutionVersionArn),
      v.trainingMode, badge(v.status), when(v.creationDateTime),
      h('button', {type: 'button', class: 'show-version', 'data-arn': v.solutionVersionArn,
        onclick: () => showVersion(detail, v.solutionVersionArn)}, 'details')])))));
  panel.replaceChildren(list, detail);
  const chosen = state.pickVersion || solutions.flatMap((x) => x.versions)
    .sort((a, b) => (b.creationDateTime || 0) - (a.creationDateTime || 0))[0]?.solutionVersionArn;
  state.pickVersion = null;
  if (chosen) await showVersion(detail, chosen);
}

async function showVersion(detail, arn) {
  if (detail.dataset.timer) clearInterval(Number(detail.dataset.timer));
  const draw = async () => {
    const version = (await control('DescribeSolutionVersion', {solutionVersionArn: arn})).solutionVersion;
    const live = state.liveCurves.get(arn) || new Map();
    const point = curvePoint((version.progress || {}).message);
    if (point) live.set(point[0], point[1]);
    state.liveCurves.set(arn, live);
    let parent = null;
    if (version.parentSolutionVersionArn) {
      parent = (await control('DescribeSolutionVersion', {solutionVersionArn: version.parentSolutionVersionArn}))
        .solutionVersion;
    }
    detail.replaceChildren(...versionView(version, parent, live));
    return DONE.has(version.status);
  };
  if (!(await draw())) {
    const id = every(POLL_MS, async () => { if (await draw()) clearInterval(id); });
    detail.dataset.timer = String(id);
  }
}

function versionView(version, parent, live) {
  const facts = [['solution version', version.solutionVersionArn], ['recipe', short(version.recipeArn)],
    ['training mode', version.trainingMode], ['status', badge(version.status)],
    ['progress', DONE.has(version.status) ? null : (version.progress || {}).message], ['training time', version.trainingHours !== undefined
      ? `${(version.trainingHours * 3600).toFixed(1)} s` : null], ['interactions', number(version.interactions)],
    ['test set', version.testSet ? `${number(version.testSet.users)} users, ${number(version.testSet.interactions)} ` +
      'interactions held out' : null], ['parent', version.parentSolutionVersionArn], ['failure', version.failureReason]];
  const out = [h('h3', {}, 'Solution version ', short(version.solutionVersionArn)),
    h('dl', {class: 'facts version-facts'}, facts.filter(([, v]) => v).flatMap(([k, v]) => [h('dt', {}, k), h('dd', {}, v)]))];
  const metrics = version.metrics || {};
  if (Object.keys(metrics).length) {
    const series = {'this version': metrics,
      'popularity (same split)': (version.baselineMetrics || {}).popularity || {}};
    if (parent) series['parent version'] = parent.metrics || {};
    const names = SHOWN_METRICS.filter((m) => m in metrics);
    const margin = version.metricIntervals || {};
    const popularity = series['popularity (same split)'];
    out.push(h('h4', {}, 'Offline metrics against popularity' + (parent ? ' and the parent' : '')),
      h('div', {class: 'metrics-chart'}, barChart(series, names, margin)),
      table(['metric', ...Object.keys(series), 'lift over popularity'], Object.keys(metrics).sort().map((m) => [m,
        ...Object.entries(series).map(([name, v]) => (m in v ? Number(v[m]).toFixed(4) +
          (name === 'this version' && m in margin ? ` ± ${Number(margin[m]).toFixed(4)}` : '') : '')),
        lift(metrics[m], popularity[m])]), {class: 'metrics'}));
  }
  const persisted = version.trainingCurve || [];
  const points = persisted.length ? persisted.map((loss, i) => [i + 1, loss]) : [...live.entries()].sort((a, b) => a[0] - b[0]);
  if (points.length) {
    out.push(h('h4', {}, 'Training curve'), h('div', {class: 'curve-chart'}, lineChart(points)));
  } else if (!DONE.has(version.status)) {
    out.push(h('p', {class: 'hint'}, 'The training curve appears here as epochs finish.'));
  }
  return out;
}

async function showCampaigns(panel) {
  const campaigns = await campaignsOf(state.group.datasetGroupArn);
  if (!campaigns.length) {
    panel.replaceChildren(h('p', {}, 'No campaigns yet: CreateCampaign deploys a solution version.'));
    return;
  }
  panel.replaceChildren(table(['campaign', 'status', 'solution', 'serves version', 'sync with latest', 'updated'],
    campaigns.map(({campaign, solution, versions}) => {
      const served = servedVersion(campaign, versions);
      return [campaign.name, badge(campaign.status), solution.name,
        h('button', {type: 'button', class: 'link served-version', 'data-arn': served, onclick: () => {
          state.pickVersion = served;
          showTab('solutions');
        }}, short(served)),
        campaign.campaignConfig && campaign.campaignConfig.syncWithLatestSolutionVersion ? 'yes' : 'no',
        when(campaign.lastUpdatedDateTime)];
    }), {class: 'campaigns'}));
}

/** `$NAME` placeholders of a filter expression: the filterValues a request must give. */
export function placeholders(expression) {
  return [...new Set([...(expression || '').matchAll(/\$([A-Za-z0-9_]+)/g)].map((m) => m[1]))];
}

async function recommendationsList(campaignArn, userId, filterArn, filterValues) {
  const input = {campaignArn, userId, numResults: 10};
  if (filterArn) input.filterArn = filterArn;
  if (filterValues && Object.keys(filterValues).length) input.filterValues = filterValues;
  return (await runtime('/recommendations', input)).itemList;
}

async function showFilters(panel) {
  const group = state.group.datasetGroupArn;
  const [summaries, campaigns] = await Promise.all([listAll('ListFilters', 'Filters', {datasetGroupArn: group}),
    campaignsOf(group)]);
  const filters = await Promise.all(summaries.map(async (f) => (await control('DescribeFilter',
    {filterArn: f.filterArn})).filter));
  if (!filters.length) {
    panel.replaceChildren(h('p', {}, 'No filters yet: CreateFilter with an expression adds one.'));
    return;
  }
  const filterPick = h('select', {name: 'filter'}, filters.map((f) => h('option', {value: f.filterArn}, f.name)));
  const campaignPick = h('select', {name: 'campaign'}, campaigns.map(({campaign}) => h('option',
    {value: campaign.campaignArn}, campaign.name)));
  const user = h('input', {name: 'userId', placeholder: 'user id', required: true, spellcheck: 'false'});
  const values = h('span', {class: 'filter-values'});
  const result = h('div', {class: 'try-result'});
  const valueInputs = () => {
    const f = filters.find((x) => x.filterArn === filterPick.value);
    values.replaceChildren(...placeholders(f && f.filterExpression).map((name) => h('label', {},
      `$${name} `, h('input', {'data-name': name, placeholder: '"value"'}))));
  };
  filterPick.addEventListener('change', valueInputs);
  valueInputs();
  const form = h('form', {class: 'try-filter'}, h('label', {}, 'filter ', filterPick), h('label', {}, 'campaign ',
    campaignPick), h('label', {}, 'user ', user), values, h('button', {type: 'submit'}, 'Try it'));
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    result.replaceChildren(h('p', {}, 'asking…'));
    try {
      const given = Object.fromEntries([...values.querySelectorAll('input')].filter((i) => i.value)
        .map((i) => [i.dataset.name, i.value]));
      const [plain, filtered] = await Promise.all([
        recommendationsList(campaignPick.value, user.value, null, null),
        recommendationsList(campaignPick.value, user.value, filterPick.value, given)]);
      const title = await titlesOf([...plain, ...filtered].map((i) => i.itemId));
      const kept = new Set(filtered.map((i) => i.itemId));
      result.replaceChildren(h('div', {class: 'columns'},
        h('div', {}, h('h4', {}, 'without the filter'), h('ol', {class: 'unfiltered'}, plain.map((i) => h('li',
          {class: kept.has(i.itemId) ? '' : 'removed'}, itemLabel(title, i.itemId))))),
        h('div', {}, h('h4', {}, 'with the filter'), h('ol', {class: 'filtered'}, filtered.map((i) => h('li', {},
          itemLabel(title, i.itemId)))))));
    } catch (error) {
      failed(result, error);
    }
  });
  panel.replaceChildren(table(['filter', 'status', 'expression'], filters.map((f) => [f.name, badge(f.status),
    h('code', {}, f.filterExpression)]), {class: 'filters'}),
  h('h3', {}, 'Try it'), campaigns.length ? form : h('p', {}, 'A campaign is needed to try a filter.'), result);
}

async function showEvents(panel) {
  const group = state.group.datasetGroupArn;
  const body = h('tbody', {});
  const counter = h('span', {class: 'count'}, '0 events');
  panel.replaceChildren(h('p', {class: 'live'}, h('span', {class: 'pulse'}), ' listening for events (PutEvents) · ',
    counter), h('table', {class: 'events'}, h('thead', {}, h('tr', {}, ['received', 'user', 'type', 'item', 'session']
    .map((c) => h('th', {}, c)))), body));
  let cursor = null;
  let seen = 0;
  const poll = async () => {
    const got = await consoleApi('events', [['datasetGroupArn', group], ...(cursor !== null ? [['after', cursor]] : [])]);
    cursor = got.cursor;
    if (!got.events.length) return;
    const title = await titlesOf(got.events.map((e) => e.itemId).filter(Boolean));
    for (const e of got.events) {
      body.prepend(h('tr', {class: 'event', 'data-event-id': e.eventId}, h('td', {}, when(e.receivedAt)),
        h('td', {}, e.userId || '(anonymous)'), h('td', {}, e.eventType),
        h('td', {}, e.itemId ? itemLabel(title, e.itemId) : ''), h('td', {}, e.sessionId)));
    }
    while (body.children.length > FEED_KEPT) body.lastChild.remove();
    seen += got.events.length;
    counter.textContent = `${number(seen)} events`;
  };
  await poll();
  every(POLL_MS, () => poll().catch((error) => say(`live events: ${error.message}`, 'error')));
}

async function trackingId(group) {
  const trackers = await listAll('ListEventTrackers', 'eventTrackers', {datasetGroupArn: group});
  if (!trackers.length) return null;
  return (await control('DescribeEventTracker', {eventTrackerArn: trackers[0].eventTrackerArn})).eventTracker.trackingId;
}

async function showTry(panel) {
  const group = state.group.datasetGroupArn;
  const [campaigns, summaries] = await Promise.all([campaignsOf(group),
    listAll('ListFilters', 'Filters', {datasetGroupArn: group})]);
  if (!campaigns.length) {
    panel.replaceChildren(h('p', {}, 'A campaign is needed: CreateCampaign deploys a solution version.'));
    return;
  }
  const campaignPick = h('select', {name: 'campaign'}, campaigns.map(({campaign}) => h('option',
    {value: campaign.campaignArn}, campaign.name)));
  const filterPick = h('select', {name: 'filter'}, h('option', {value: ''}, 'no filter'),
    summaries.map((f) => h('option', {value: f.filterArn}, f.name)));
  const users = h('datalist', {id: 'known-users'});
  const user = h('input', {name: 'userId', list: 'known-users', placeholder: 'user id', required: true,
    spellcheck: 'false'});
  const history = h('div', {class: 'history'});
  const recs = h('div', {class: 'recommendations'});
  const note = h('p', {class: 'hint'});
  const fillUsers = async () => {
    const got = await consoleApi('users', [['campaignArn', campaignPick.value]]);
    users.replaceChildren(...got.userIds.map((u) => h('option', {value: u})));
    if (!user.value && got.userIds.length) user.placeholder = `user id, e.g. ${got.userIds[0]}`;
  };
  campaignPick.addEventListener('change', () => fillUsers().catch((error) => failed(note, error)));
  let shown = [];
  const showHistory = async () => {
    const got = await consoleApi('history', [['campaignArn', campaignPick.value], ['userId', user.value]]);
    const title = await titlesOf(got.history.map((i) => i.itemId));
    history.replaceChildren(h('h4', {}, 'recent history'), got.history.length ? h('ol', {class: 'history-list'},
      got.history.map((i) => h('li', {class: i.streamed ? 'streamed' : ''}, itemLabel(title, i.itemId), ' ',
        h('span', {class: 'when'}, [i.eventType, when(i.timestamp)].filter(Boolean).join(' · '))))) :
      h('p', {}, 'no history: this user is new to the model'));
  };
  const showRecs = async (before = null) => {
    const items = await recommendationsList(campaignPick.value, user.value, filterPick.value || null, null);
    const title = await titlesOf(items.map((i) => i.itemId));
    const old = new Set(before || items.map((i) => i.itemId));
    shown = items.map((i) => i.itemId);
    recs.replaceChildren(h('h4', {}, 'recommendations (click one to send a click event)'),
      h('ol', {class: 'recommendation-list'}, items.map((i) => h('li', {},
        h('button', {type: 'button', class: 'item', 'data-item': i.itemId, onclick: () => click(i.itemId)},
          itemLabel(title, i.itemId)), old.has(i.itemId) ? '' : h('span', {class: 'new'}, 'new'),
        h('span', {class: 'score'}, i.score !== undefined ? Number(i.score).toFixed(4) : '')))));
    return items.map((i) => i.itemId);
  };
  const click = async (itemId) => {
    const tracker = await trackingId(group);
    if (!tracker) {
      note.textContent = 'This dataset group has no event tracker: CreateEventTracker makes one, then clicks can be sent.';
      return;
    }
    const before = shown.slice();
    await call('/events', {method: 'POST', headers: {'Content-Type': 'application/json'}, body: JSON.stringify({
      trackingId: tracker, userId: user.value, sessionId: state.session,
      eventList: [{eventType: 'click', itemId, sentAt: Date.now() / 1000}]})});
    note.textContent = `sent a click on ${itemId}; waiting for the recommendations to change…`;
    const deadline = Date.now() + 15000;
    let now = before;
    while (Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 400));
      now = await showRecs(before);
      if (now.join() !== before.join()) break;
    }
    await showHistory();
    note.textContent = now.join() !== before.join() ? `the click on ${itemId} changed the list`
      : `the click on ${itemId} reached the server; this campaign's list did not change`;
  };
  const form = h('form', {class: 'try-user'}, h('label', {}, 'campaign ', campaignPick), h('label', {}, 'filter ',
    filterPick), h('label', {}, 'user ', user, users), h('button', {type: 'submit'}, 'Show'));
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    note.textContent = '';
    try {
      await Promise.all([showHistory(), showRecs()]);
    } catch (error) {
      failed(note, error);
    }
  });
  panel.replaceChildren(form, note, h('div', {class: 'columns'}, history, recs));
  await fillUsers();
}

const PANELS = {datasets: showDatasets, jobs: showJobs, solutions: showSolutions, campaigns: showCampaigns,
  filters: showFilters, events: showEvents, try: showTry};

async function showTab(tab) {
  stopTimers();
  state.tab = tab;
  for (const button of document.querySelectorAll('[data-tab]')) {
    button.setAttribute('aria-selected', String(button.dataset.tab === tab));
  }
  for (const name of Object.keys(PANELS)) document.getElementById('panel-' + name).hidden = name !== tab;
  const panel = document.getElementById('panel-' + tab);
  panel.replaceChildren(h('p', {class: 'loading'}, 'loading…'));
  try {
    await PANELS[tab](panel);
  } catch (error) {
    failed(panel, error);
  }
}

async function showGroup(group) {
  state.group = group;
  state.titles = new Map();
  document.getElementById('group-name').textContent = group.name;
  document.getElementById('group-arn').textContent = group.datasetGroupArn;
  for (const li of document.querySelectorAll('#groups button')) {
    li.setAttribute('aria-current', String(li.dataset.arn === group.datasetGroupArn));
  }
  await showTab(state.tab);
}

async function loadGroups() {
  const groups = await listAll('ListDatasetGroups', 'datasetGroups');
  document.getElementById('sign-in').hidden = true;
  document.getElementById('console-root').hidden = false;
  const list = document.getElementById('groups');
  list.replaceChildren(...groups.map((g) => h('li', {}, h('button', {type: 'button', 'data-arn': g.datasetGroupArn,
    onclick: () => showGroup(g)}, g.name))));
  document.getElementById('group').hidden = !groups.length;
  if (!groups.length) {
    list.replaceChildren(h('li', {class: 'hint'}, 'none yet: CreateDatasetGroup or `personalize import` makes one'));
    return;
  }
  await showGroup(groups[0]);
}

// ---------------------------------------------------------------- signing in

function showWho() {
  const creds = credentials();
  document.getElementById('who').textContent = creds ? `signed in: ${creds.accessKeyId} · ${creds.region}`
    : 'not signed in (an open server)';
  document.getElementById('sign-out').hidden = !creds;
}

function showSignIn(message) {
  stopTimers();
  const form = document.getElementById('sign-in');
  form.hidden = false;
  document.getElementById('console-root').hidden = true;
  document.getElementById('sign-in-error').textContent = credentials() ? message : '';
}

async function start() {
  showWho();
  say('');
  try {
    await loadGroups();
  } catch (error) {
    if (!(error instanceof ApiError && AUTH_ERRORS.has(error.type))) say(`${error.type || 'Error'}: ${error.message}`, 'error');
  }
}

function boot() {
  document.getElementById('sign-in').addEventListener('submit', (e) => {
    e.preventDefault();
    const data = new FormData(e.target);
    sessionStorage.setItem(CREDENTIALS, JSON.stringify({accessKeyId: data.get('accessKeyId').trim(),
      secret: data.get('secret'), region: data.get('region').trim() || 'us-east-1'}));
    start();
  });
  document.getElementById('sign-out').addEventListener('click', () => {
    sessionStorage.removeItem(CREDENTIALS);
    stopTimers();
    document.getElementById('console-root').hidden = true;
    start();
  });
  for (const button of document.querySelectorAll('[data-tab]')) {
    button.addEventListener('click', () => showTab(button.dataset.tab));
  }
  start();
}

if (document.getElementById('console-root')) boot();
