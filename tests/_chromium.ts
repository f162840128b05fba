/**
 * Test harness: a headless Debian `chromium` driven over the DevTools protocol with
 * Deno's own WebSocket (no npm packages), for the dashboard's browser test.
 *
 * @module
 */

const SEARCH_PATHS = ["/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome"];
const LISTENING_REGEXP = /DevTools listening on (ws:\/\/[^\s]+)/;

/**
 * Finds the browser: `$CHROMIUM` if set (and only there), else the usual paths.
 *
 * @returns Its path, or undefined when it is not installed.
 */
export function findChromium(): string | undefined {
  const override = Deno.env.get("CHROMIUM");
  for (const candidate of override ? [override] : SEARCH_PATHS) {
    try {
      if (Deno.statSync(candidate).isFile) return candidate;
    } catch {
      // Not here; try the next one.
    }
  }
  return undefined;
}

/** A page: DevTools commands, events, and a few conveniences. */
export interface Page {
  /** Sends a command and resolves with its result. */
  send(method: string, params?: Record<string, unknown>): Promise<Record<string, unknown>>;
  /** Uncaught exceptions and console errors seen so far. */
  readonly errors: string[];
  /** Navigates and resolves once the load event fired. */
  goto(url: string): Promise<void>;
  /** Evaluates `expression` in the page and returns its (JSON) value. */
  evaluate<T>(expression: string): Promise<T>;
  /** A PNG of the whole page. */
  screenshot(): Promise<Uint8Array>;
}

/** A running browser; `await using` closes it. */
export interface Browser extends AsyncDisposable {
  page: Page;
  close(): Promise<void>;
}

/**
 * Starts headless chromium with a fresh profile and opens one page.
 *
 * @throws {Error} When chromium is not installed (with an install hint; under `CI=true`
 * too, so the browser test fails instead of being skipped) or does not start.
 */
export async function launchChromium(
  options: { width?: number; height?: number } = {},
): Promise<Browser> {
  const binary = findChromium();
  if (binary === undefined) {
    throw new Error(
      "chromium is required by the dashboard test and was not found ($CHROMIUM, /usr/bin); " +
        "install it with: apt-get install -y chromium",
    );
  }
  const profile = await Deno.makeTempDir({ prefix: "unload-chromium-" });
  const child = new Deno.Command(binary, {
    args: [
      "--headless",
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
      "--disable-dev-shm-usage",
      "--hide-scrollbars",
      `--user-data-dir=${profile}`,
      "--remote-debugging-address=127.0.0.1",
      "--remote-debugging-port=0",
      "about:blank",
    ],
    stdin: "null",
    stdout: "null",
    stderr: "piped",
  }).spawn();
  const close = async () => {
    try {
      child.kill("SIGTERM");
    } catch { /* exited */ }
    await child.status;
    await Deno.remove(profile, { recursive: true }).catch(() => {});
  };
  try {
    const browserWs = await readDevToolsUrl(child.stderr);
    const { host } = new URL(browserWs);
    const res = await fetch(`http://${host}/json/new?about:blank`, { method: "PUT" });
    const target = await res.json() as { webSocketDebuggerUrl: string };
    const page = await connectPage(target.webSocketDebuggerUrl);
    await page.send("Emulation.setDeviceMetricsOverride", {
      width: options.width ?? 1360,
      height: options.height ?? 820,
      deviceScaleFactor: 1,
      mobile: false,
    });
    const closeAll = async () => {
      page.close();
      await close();
    };
    return { page, close: closeAll, [Symbol.asyncDispose]: closeAll };
  } catch (e) {
    await close();
    throw e;
  }
}

// Reads stderr until the DevTools URL shows, then keeps draining it.
async function readDevToolsUrl(stderr: ReadableStream<Uint8Array>): Promise<string> {
  const reader = stderr.pipeThrough(new TextDecoderStream()).getReader();
  let text = "";
  const timeout = setTimeout(() => reader.cancel(), 15_000);
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) throw new Error(`chromium exited or timed out before listening: ${text}`);
      text += value;
      const m = LISTENING_REGEXP.exec(text);
      if (m) {
        (async () => {
          while (!(await reader.read().catch(() => ({ done: true }))).done);
        })();
        return m[1]!;
      }
    }
  } finally {
    clearTimeout(timeout);
  }
}

async function connectPage(url: string): Promise<Page & { close(): void }> {
  const ws = new WebSocket(url);
  await new Promise((resolve, reject) => {
    ws.onopen = resolve;
    ws.onerror = () => reject(new Error(`cannot connect to ${url}`));
  });
  let nextId = 1;
  type Result = Record<string, unknown>;
  const pending = new Map<number, { resolve: (v: Result) => void; reject: (e: Error) => void }>();
  const listeners = new Map<string, Array<(params: Record<string, unknown>) => void>>();
  const errors: string[] = [];
  ws.onmessage = (event) => {
    const msg = JSON.parse(event.data as string);
    if (msg.id !== undefined) {
      const p = pending.get(msg.id);
      pending.delete(msg.id);
      if (msg.error) p?.reject(new Error(`${msg.error.message} (${msg.error.code})`));
      else p?.resolve(msg.result);
      return;
    }
    for (const fn of listeners.get(msg.method) ?? []) fn(msg.params);
  };
  ws.onclose = () => {
    for (const p of pending.values()) p.reject(new Error("DevTools connection closed"));
    pending.clear();
  };
  const send = (method: string, params: Record<string, unknown> = {}) =>
    new Promise<Result>((resolve, reject) => {
      const id = nextId++;
      pending.set(id, { resolve, reject });
      ws.send(JSON.stringify({ id, method, params }));
    });
  const once = (method: string) =>
    new Promise<void>((resolve) => {
      const list = listeners.get(method) ?? [];
      const fn = () => {
        list.splice(list.indexOf(fn), 1);
        resolve();
      };
      list.push(fn);
      listeners.set(method, list);
    });
  const on = (method: string, fn: (params: Record<string, unknown>) => void) => {
    listeners.set(method, [...(listeners.get(method) ?? []), fn]);
  };
  on("Runtime.exceptionThrown", (p) => {
    const d = p.exceptionDetails as { text: string; exception?: { description?: string } };
    errors.push(`${d.text} ${d.exception?.description ?? ""}`.trim());
  });
  on("Runtime.consoleAPICalled", (p) => {
    if (p.type === "error") errors.push(`console.error: ${JSON.stringify(p.args)}`);
  });
  await send("Page.enable");
  await send("Runtime.enable");
  return {
    send,
    errors,
    async goto(target) {
      const loaded = once("Page.loadEventFired");
      const r = await send("Page.navigate", { url: target });
      if (r.errorText) throw new Error(`navigating to ${target}: ${r.errorText}`);
      await loaded;
    },
    async evaluate<T>(expression: string): Promise<T> {
      const r = await send("Runtime.evaluate", {
        expression,
        returnByValue: true,
        awaitPromise: true,
      });
      if (r.exceptionDetails) {
        throw new Error(`evaluate failed: ${JSON.stringify(r.exceptionDetails)}`);
      }
      return (r.result as { value: T }).value;
    },
    async screenshot() {
      const r = await send("Page.captureScreenshot", {
        format: "png",
        captureBeyondViewport: true,
      });
      const bin = atob(r.data as string);
      return Uint8Array.from(bin, (c) => c.charCodeAt(0));
    },
    close() {
      ws.close();
    },
  };
}
