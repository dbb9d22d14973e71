import { describe, expect, it } from 'vitest';
import { freePort, makeTempDir, run, startServer, waitForTcp } from '../src/index.js';

const nodeServer = (port: number, extra = '') =>
  `require('node:http').createServer((q,s)=>s.end('up')).listen(${port},'127.0.0.1',()=>console.log('listening ${port}'));${extra}`;

describe('startServer', () => {
  it('waits for a TCP port, serves, and stops the process group', async () => {
    const port = await freePort();
    const server = await startServer({
      name: 'node-http',
      command: process.execPath,
      args: ['-e', nodeServer(port)],
      ready: { tcp: { port } },
    });
    const res = await fetch(`http://127.0.0.1:${port}/`);
    expect(await res.text()).toBe('up');
    expect(server.logs()).toContain(`listening ${port}`);
    await server.stop();
    await server.stop();
    await expect(waitForTcp('127.0.0.1', port, 300)).rejects.toThrow(/nothing listens/);
  });

  it('waits for an HTTP answer or a log line', async () => {
    const port = await freePort();
    const viaHttp = await startServer({
      name: 'http-ready',
      command: process.execPath,
      args: ['-e', nodeServer(port)],
      ready: { http: { url: `http://127.0.0.1:${port}/`, ok: (s) => s === 200 } },
    });
    await viaHttp.stop();
    const port2 = await freePort();
    const viaLog = await startServer({
      name: 'log-ready',
      command: process.execPath,
      args: ['-e', nodeServer(port2)],
      ready: { log: new RegExp(`listening ${port2}`) },
    });
    await viaLog.kill();
  });

  it('fails with the server log when the process exits before it is ready', async () => {
    const port = await freePort();
    await expect(
      startServer({
        name: 'crasher',
        command: process.execPath,
        args: ['-e', "console.error('bad config line 3'); process.exit(7)"],
        ready: { tcp: { port } },
        timeoutMs: 5_000,
      }),
    ).rejects.toThrow(/crasher did not become ready \(exited: code 7[\s\S]*bad config line 3/);
  });

  it('kills children of the server too (process group)', async () => {
    const port = await freePort();
    const childPort = await freePort();
    const script = `require('node:child_process').spawn(process.execPath, ['-e', ${JSON.stringify(nodeServer(childPort))}], {stdio:'inherit'}); ${nodeServer(port)}`;
    const server = await startServer({
      name: 'parent',
      command: process.execPath,
      args: ['-e', script],
      ready: { tcp: { port } },
    });
    await waitForTcp('127.0.0.1', childPort, 10_000);
    await server.stop();
    // The grandchild got SIGTERM with its group; give a loaded machine a moment to reap it.
    let alive = true;
    for (let i = 0; i < 100 && alive; i++) {
      alive = await waitForTcp('127.0.0.1', childPort, 100).then(
        () => true,
        () => false,
      );
      if (alive) await new Promise((r) => setTimeout(r, 100));
    }
    expect(alive).toBe(false);
  });
});

describe('run and temp dirs', () => {
  it('runs a command and reports failures with output', async () => {
    expect((await run('sh', ['-c', 'echo hi'])).stdout).toBe('hi\n');
    await expect(run('sh', ['-c', 'echo nope >&2; exit 3'])).rejects.toThrow(/exited with 3[\s\S]*nope/);
    const dir = await makeTempDir();
    await run('sh', ['-c', `touch ${dir.path}/f`]);
    await dir.remove();
    await expect(run('test', ['-e', dir.path])).rejects.toThrow();
  });
});
