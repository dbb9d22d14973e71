// A Cloudmux server in its own forked process, so its memory is measured alone: the parent side
// forks it and talks to it over IPC; the child side samples its own RSS every 20 ms and answers
// `reset` (GC, settle, idle RSS) and `peak` (highest RSS since the last reset).
import { fork } from 'node:child_process';

/**
 * Forks `script` under the TypeScript source loader. Returns `next(type)` (the next message of that
 * type), `ask(type)` (send, then wait for the answer) and `stop()`. A child that dies rejects every
 * pending and later wait, so a crashed server fails the benchmark instead of hanging it.
 */
export function forkServer(script, { env = process.env, nodeArgs = [] } = {}) {
  const child = fork(script, [], {
    execArgv: ['--expose-gc', '--conditions=@cloudmux/source', '--import', 'tsx', ...nodeArgs],
    env,
  });
  const messages = [];
  let wake;
  let exited = null;
  child.on('message', (m) => {
    messages.push(m);
    wake?.();
  });
  const exit = new Promise((resolve) => {
    child.once('exit', (code, signal) => {
      exited = { code, signal };
      wake?.();
      resolve();
    });
  });
  const next = async (type) => {
    for (;;) {
      const i = messages.findIndex((m) => m.type === type);
      if (i >= 0) return messages.splice(i, 1)[0];
      if (exited)
        throw new Error(`the server process exited (${exited.signal ?? exited.code}) before '${type}'`);
      await new Promise((r) => (wake = r));
    }
  };
  const ask = async (type) => {
    child.send(type);
    return next(type);
  };
  const stop = async () => {
    if (exited) return;
    if (child.connected) child.send('stop');
    const timer = setTimeout(() => child.kill('SIGKILL'), 15_000);
    await exit;
    clearTimeout(timer);
  };
  return { child, next, ask, stop };
}

/** Child side: the RSS sampler and the IPC answers; `close` runs on `stop` before the exit. */
export function serveRssProbe(close) {
  let peak = 0;
  let closing = null;
  const shutdown = async () => {
    closing ??= close();
    await closing;
    process.exit(0);
  };
  const sample = () => {
    peak = Math.max(peak, process.memoryUsage().rss);
  };
  setInterval(sample, 20).unref();
  process.on('message', async (message) => {
    if (message === 'reset') {
      global.gc?.();
      await new Promise((r) => setTimeout(r, 200));
      peak = process.memoryUsage().rss;
      process.send({ type: 'reset', rss: peak });
    } else if (message === 'peak') {
      sample();
      process.send({ type: 'peak', rss: peak });
    } else if (message === 'stop') {
      await shutdown();
    }
  });
  // The parent went away without `stop` (killed): do not outlive it.
  process.on('disconnect', shutdown);
}
