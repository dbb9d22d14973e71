// Sums the vitest JSON reports of every package into `tests: N passed, N failed[, N skipped]`.
// A package whose test task ran but left no report counts as one failure, so a crash cannot pass.
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';

const roots = ['packages', 'apps', 'bench', 'tooling'];
const packageDirs = [];
function walk(dir, depth) {
  if (!existsSync(dir) || depth > 3) return;
  if (existsSync(join(dir, 'package.json'))) packageDirs.push(dir);
  for (const entry of readdirSync(dir)) {
    if (entry === 'node_modules' || entry === 'dist' || entry.startsWith('.')) continue;
    const full = join(dir, entry);
    if (statSync(full).isDirectory()) walk(full, depth + 1);
  }
}
for (const root of roots) walk(root, 0);

let passed = 0;
let failed = 0;
let skipped = 0;
const problems = [];
for (const dir of packageDirs) {
  const pkg = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8'));
  if (!pkg.scripts?.test) continue;
  const reportPath = join(dir, 'test-report.json');
  if (!existsSync(reportPath)) {
    failed += 1;
    problems.push(`${pkg.name}: no test report (the test run crashed or did not start)`);
    continue;
  }
  const report = JSON.parse(readFileSync(reportPath, 'utf8'));
  passed += report.numPassedTests ?? 0;
  failed += report.numFailedTests ?? 0;
  skipped += (report.numPendingTests ?? 0) + (report.numTodoTests ?? 0);
  // A suite that failed to load has no failed tests but is a failure.
  const brokenSuites = (report.testResults ?? []).filter(
    (r) => r.status === 'failed' && (r.assertionResults ?? []).every((a) => a.status !== 'failed'),
  );
  for (const suite of brokenSuites) {
    failed += 1;
    problems.push(`${pkg.name}: ${suite.name} failed to run: ${(suite.message ?? '').split('\n')[0]}`);
  }
}
for (const p of problems) console.error(`test-summary: ${p}`);
console.log(`tests: ${passed} passed, ${failed} failed${skipped ? `, ${skipped} skipped` : ''}`);
process.exit(failed > 0 ? 1 : 0);
