// A Node program for the JIT tests (run with --perf-basic-prof).
// It spins in earlyWork() from the start; a line on stdin makes it compile a function
// it has never had, lateWork() (its source built at run time, so V8 can only compile
// it then), and spin in that instead. argv[2]: seconds to run at most.
"use strict";

function earlyLeaf(n) {
  let s = 0;
  for (let i = 0; i < n; i++) s = (s + i * i) % 1000003;
  return s;
}

function earlyWork() {
  return earlyLeaf(20000);
}

let work = earlyWork;
const deadline = Date.now() + Number(process.argv[2] || 60) * 1000;

process.stdin.on("data", () => {
  const source = "(function lateLeaf(n) { let s = 0; for (let i = 0; i < n; i++) s = (s + i * 7) % 1000033; return s; })";
  const lateLeaf = (0, eval)(source);
  work = function lateWork() {
    return lateLeaf(20000);
  };
  process.stdout.write("late\n");
});

function spin() {
  const until = Date.now() + 50;
  while (Date.now() < until) work();
  if (Date.now() < deadline) setImmediate(spin);
  else process.exit(0);
}
process.stdout.write("ready\n");
spin();
