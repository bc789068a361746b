// tap-failures.js: reads a TAP file written by `node --test --test-reporter=tap`
// and prints what scripts/test.sh shows on the console: every failed test in
// full (name path, error, location, stack), nothing about the passing ones,
// then one machine-readable line "RESULT <passed> <failed>" from the summary.
//
// Usage: node tests/e2e/lib/tap-failures.js FILE.tap
import { readFileSync } from 'node:fs';

const lines = readFileSync(process.argv[2], 'utf8').split('\n');
const names = []; // "# Subtest:" names by nesting depth, to print a path
const out = [];

const indentOf = (s) => s.length - s.trimStart().length;

for (let i = 0; i < lines.length; i++) {
  const line = lines[i];
  const sub = /^(\s*)# Subtest: (.*)$/.exec(line);
  if (sub) {
    const depth = sub[1].length / 4;
    names.length = depth;
    names[depth] = sub[2];
    continue;
  }
  const m = /^(\s*)not ok \d+ - (.*)$/.exec(line);
  if (!m) continue;
  const ind = m[1].length;
  const block = [];
  let j = i + 1;
  if (j < lines.length && lines[j].trim() === '---') {
    for (j++; j < lines.length; j++) {
      if (lines[j].trim() === '...' && indentOf(lines[j]) === ind + 2) break;
      block.push(lines[j].slice(ind + 2));
    }
  }
  // A parent that failed only because a subtest failed adds nothing: the subtest is shown.
  if (block.some((l) => /^failureType: 'subtestsFailed'/.test(l))) continue;
  const path = names.slice(0, ind / 4 + 1).filter(Boolean);
  if (path.length === 0 || path[path.length - 1] !== m[2]) path.push(m[2]);
  out.push(`  FAIL ${path.join(' > ')}`);
  for (const l of block) {
    if (/^duration_ms:/.test(l)) continue;
    if (/^\s+(async )?.*\(node:[a-z_/]+:\d+:\d+\)$/.test(l)) continue; // the runner's own frames
    out.push(`    | ${l}`);
  }
}

const num = (key) => {
  const hit = lines.map((l) => new RegExp(`^# ${key} (\\d+)$`).exec(l)).filter(Boolean).pop();
  return hit ? Number(hit[1]) : null;
};
const pass = num('pass');
const fail = num('fail');
const cancelled = num('cancelled') ?? 0;
if (out.length) console.log(out.join('\n'));
if (pass === null || fail === null) {
  console.log('  (no summary in the TAP output: the runner did not finish)');
  console.log('RESULT 0 1');
} else {
  console.log(`RESULT ${pass} ${fail + cancelled}`);
}
