// A real openpersonalize server for the end-to-end tests: `personalize serve` in embedded mode
// on a free port and a fresh data dir, its control plane (JSON 1.1) and its event log, read
// back with `personalize stream tail` exactly as a downstream consumer would.
import { execFile, spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, isAbsolute, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

export const SDK = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
export const ROOT = resolve(SDK, '..', '..');
export const REGION = 'us-east-1';
export const ACCOUNT = '000000000000';
export const arn = (kind, name) => `arn:aws:personalize:${REGION}:${ACCOUNT}:${kind}/${name}`;

/** OPZ_PYTHON, relative to sdk/js when relative; default: the repo root's .venv. */
export function python() {
  const p = process.env.OPZ_PYTHON || '../../.venv/bin/python';
  return isAbsolute(p) ? p : resolve(SDK, p);
}

export function freePort() {
  return new Promise((ok, fail) => {
    const s = createServer();
    s.once('error', fail);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => ok(port));
    });
  });
}

function serverEnv(extra) {
  const env = { ...process.env, PYTHONPATH: ROOT, OPZ_LOG_LEVEL: 'warning', OMP_NUM_THREADS: '1',
    OPENBLAS_NUM_THREADS: '1', ...extra };
  delete env.OPZ_KAFKA_BOOTSTRAP_SERVERS; // embedded mode: SQLite log, in-process session state
  delete env.OPZ_REDIS_URL;
  return env;
}

export async function startServer({ env = {}, timeoutMs = 30_000 } = {}) {
  const dir = mkdtempSync(join(tmpdir(), 'opz-sdk-e2e-'));
  const dataDir = join(dir, 'data');
  const port = await freePort();
  const url = `http://127.0.0.1:${port}`;
  const childEnv = serverEnv({ OPZ_FILE_ROOTS: dir, ...env }); // jobs may read the CSVs written to dir
  let log = '';
  const child = spawn(python(), ['-m', 'serving.cli', 'serve', '--data-dir', dataDir, '--port', String(port)],
    { cwd: ROOT, env: childEnv, stdio: ['ignore', 'pipe', 'pipe'] });
  child.stdout.on('data', (d) => { log += d; });
  child.stderr.on('data', (d) => { log += d; });
  const exited = new Promise((ok) => child.once('exit', (code, signal) => ok({ code, signal })));
  let spawnError;
  child.once('error', (e) => { spawnError = e; });
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (spawnError) throw new Error(`cannot start ${python()} (set OPZ_PYTHON): ${spawnError.message}`);
    if (child.exitCode !== null) throw new Error(`server exited (${child.exitCode}):\n${log}`);
    try {
      if ((await fetch(`${url}/health`)).ok) break;
    } catch { /* not listening yet */ }
    if (Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new Error(`server not healthy in ${timeoutMs} ms:\n${log}`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }

  /** One JSON 1.1 control-plane call, as boto3's `personalize` client makes it. */
  async function control(operation, body) {
    const res = await fetch(`${url}/`, { method: 'POST', body: JSON.stringify(body), headers: {
      'Content-Type': 'application/x-amz-json-1.1', 'X-Amz-Target': `AmazonPersonalize.${operation}` } });
    const out = await res.json();
    if (!res.ok) throw new Error(`${operation}: ${res.status} ${JSON.stringify(out)}`);
    return out;
  }

  /** Poll a Describe* call until the resource is ACTIVE (or failed). */
  async function waitActive(operation, body, key, timeout = 60_000) {
    const end = Date.now() + timeout;
    for (;;) {
      const r = (await control(operation, body))[key];
      if (r.status === 'ACTIVE') return r;
      if (/FAILED|STOPPED/.test(r.status) || Date.now() > end) throw new Error(`${operation}: ${JSON.stringify(r)}`);
      await new Promise((ok) => setTimeout(ok, 100));
    }
  }

  /** A dataset group and an event tracker on it: the trackingId PutEvents needs. */
  async function tracker(name) {
    const { datasetGroupArn } = await control('CreateDatasetGroup', { name });
    const { trackingId } = await control('CreateEventTracker', { name: `${name}-tracker`, datasetGroupArn });
    return { datasetGroupArn, trackingId };
  }

  let tails = 0;
  /** The dataset group's events as stored, in log order: `personalize stream tail` in a fresh
   * consumer group, until `count` were printed, then a short wait proves nothing else follows. */
  async function events(datasetGroup, count, { idleS = 0.5 } = {}) {
    const group = `sdk-e2e-${process.pid}-${++tails}`;
    const args = ['-m', 'serving.cli', 'stream', 'tail', '--dataset-group', datasetGroup, '--group', group,
      '--data-dir', dataDir, '--idle-timeout', String(idleS)];
    const run = (extra) => new Promise((ok, fail) => execFile(python(), [...args, ...extra],
      { cwd: ROOT, env: childEnv, timeout: 60_000 }, (err, stdout, stderr) => (err
        ? fail(new Error(`stream tail: ${err.message}\n${stderr}`))
        : ok(stdout.split('\n').filter(Boolean).map((l) => JSON.parse(l))))));
    const got = [];
    const end = Date.now() + 20_000;
    while (got.length < count && Date.now() < end) got.push(...await run(['--max-events', String(count - got.length)]));
    got.push(...await run(['--max-events', '1000']));
    return got;
  }

  async function stop() {
    if (child.exitCode === null) {
      child.kill('SIGTERM');
      const t = setTimeout(() => child.kill('SIGKILL'), 10_000);
      await exited;
      clearTimeout(t);
    }
    rmSync(dir, { recursive: true, force: true });
  }

  return { url, port, dataDir, dir, control, waitActive, tracker, events, stop, log: () => log };
}

/** A popularity campaign trained on a small synthetic import: what GetRecommendations needs. */
export async function popularityCampaign(server, name) {
  const { control, waitActive, dir } = server;
  const { datasetGroupArn } = await control('CreateDatasetGroup', { name });
  const schema = JSON.stringify({ type: 'record', name: 'Interactions', namespace: 'com.amazonaws.personalize.schema',
    fields: [{ name: 'USER_ID', type: 'string' }, { name: 'ITEM_ID', type: 'string' },
      { name: 'TIMESTAMP', type: 'long' }, { name: 'EVENT_TYPE', type: 'string' }], version: '1.0' });
  const { schemaArn } = await control('CreateSchema', { name: `${name}-interactions`, schema });
  const { datasetArn } = await control('CreateDataset', { name: `${name}-interactions`, schemaArn, datasetGroupArn,
    datasetType: 'INTERACTIONS' });
  // item-k is clicked by the first 40 - k users: popularity order item-0, item-1, ... item-29
  const rows = ['USER_ID,ITEM_ID,TIMESTAMP,EVENT_TYPE'];
  for (let u = 0; u < 40; u++) for (let k = 0; k < 40 - u && k < 30; k++) rows.push(`u${u},item-${k},${1_700_000_000 + u * 100 + k},click`);
  const csv = join(dir, `${name}.csv`);
  writeFileSync(csv, `${rows.join('\n')}\n`);
  const { datasetImportJobArn } = await control('CreateDatasetImportJob', { jobName: `${name}-import`, datasetArn,
    dataSource: { dataLocation: csv }, roleArn: `arn:aws:iam::${ACCOUNT}:role/unused`, importMode: 'FULL' });
  await waitActive('DescribeDatasetImportJob', { datasetImportJobArn }, 'datasetImportJob');
  const { solutionArn } = await control('CreateSolution', { name: `${name}-pop`, datasetGroupArn,
    recipeArn: 'arn:aws:personalize:::recipe/aws-popularity-count' });
  const { solutionVersionArn } = await control('CreateSolutionVersion', { solutionArn, trainingMode: 'FULL' });
  await waitActive('DescribeSolutionVersion', { solutionVersionArn }, 'solutionVersion');
  const { campaignArn } = await control('CreateCampaign', { name: `${name}-pop`, solutionVersionArn, minProvisionedTPS: 1 });
  const { trackingId } = await control('CreateEventTracker', { name: `${name}-tracker`, datasetGroupArn });
  return { datasetGroupArn, campaignArn, trackingId, interactions: rows.length - 1 };
}
