/**
 * The deploy kit in `deploy/`: the Kubernetes manifests parse and agree with each
 * other and with the config they carry, the Dockerfile compiles like deno.json's
 * compile task, and the systemd unit is hardened (and accepted by
 * `systemd-analyze verify` where it is installed).
 *
 * @module
 */
import { assert, assertEquals, assertGreater, assertStringIncludes } from "@std/assert";
import { parseAllDocuments } from "yaml";
import denoJson from "../deno.json" with { type: "json" };
import { DEFAULTS, parseConfig } from "../src/config/config.ts";
import { parseDuration } from "../src/config/duration.ts";
import { runCli } from "./_process.ts";

const DEPLOY = new URL("../deploy/", import.meta.url).pathname;
const ROOT = new URL("../", import.meta.url);
const K8S = `${DEPLOY}kubernetes/`;
const MANIFESTS = [
  "deployment.yaml",
  "configmap.yaml",
  "service.yaml",
  "pdb.yaml",
  "backend-headless-service.yaml",
];
const CONFIG_FILE = "/etc/unload/unload.yaml"; // what the image's ENTRYPOINT reads

// deno-lint-ignore no-explicit-any
type Obj = Record<string, any>;

/** Every document of a manifest file, as plain objects; fails on any YAML error or warning. */
function manifest(name: string): Obj[] {
  const docs = parseAllDocuments(Deno.readTextFileSync(`${K8S}${name}`));
  assert(Array.isArray(docs), `${name}: not a YAML stream`);
  return docs.map((d, i) => {
    assertEquals([...d.errors, ...d.warnings].map((e) => e.message), [], `${name} document ${i}`);
    return d.toJS() as Obj;
  });
}

/** The one object of `kind` (and `name`, when given) across the manifests. */
function object(kind: string, name?: string): Obj {
  const found = MANIFESTS.flatMap(manifest).filter((o) =>
    o.kind === kind && (name === undefined || o.metadata?.name === name)
  );
  assertEquals(found.length, 1, `one ${kind} ${name ?? ""}`);
  return found[0]!;
}

const deployment = () => object("Deployment");
const container = () => deployment().spec.template.spec.containers[0] as Obj;
const configText = () => object("ConfigMap").data["unload.yaml"] as string;
const config = () => parseConfig(configText(), "configmap.yaml");

/** `ENTRYPOINT`, `USER`, `EXPOSE`, `FROM` and the `deno compile` line of the Dockerfile. */
function dockerfile() {
  const text = Deno.readTextFileSync(`${DEPLOY}Dockerfile`);
  const lines = text.replaceAll("\\\n", " ").split("\n").filter((l) => !l.startsWith("#"));
  const args = (word: string) =>
    lines.filter((l) => l.startsWith(`${word} `)).map((l) => l.slice(word.length + 1).trim());
  return {
    text,
    from: args("FROM"),
    user: args("USER"),
    expose: args("EXPOSE").flatMap((l) => l.split(/\s+/)).map(Number),
    entrypoint: JSON.parse(args("ENTRYPOINT")[0] ?? "null") as string[],
    compile: args("RUN").find((l) => l.startsWith("deno compile")),
  };
}

/** A `deno compile` command's flags, without where it writes and for which target. */
function compileFlags(command: string): string[] {
  const words = command.trim().split(/\s+/).slice(2); // after "deno compile"
  const out: string[] = [];
  for (let i = 0; i < words.length; i++) {
    const w = words[i]!;
    if (w === "--output" || w === "-o" || w === "--target") i++; // and its value
    else if (w.startsWith("-") && w !== "--frozen") out.push(w);
  }
  return out.sort();
}

Deno.test("deploy: every Kubernetes manifest parses as YAML into named objects of the expected kinds", () => {
  const names = [...Deno.readDirSync(K8S)].map((e) => e.name).sort();
  assertEquals(names, [...MANIFESTS].sort(), "manifests in deploy/kubernetes");
  const kinds = MANIFESTS.flatMap(manifest).map((o) => {
    assert(typeof o.apiVersion === "string" && typeof o.metadata?.name === "string", o.kind);
    return `${o.kind}/${o.metadata.name}`;
  });
  assertEquals(kinds.sort(), [
    "ConfigMap/unload-config",
    "Deployment/unload",
    "PodDisruptionBudget/unload",
    "Service/unload",
    "Service/web",
  ]);
});

Deno.test("deploy: the Deployment probes /readyz and /healthz on the admin port the config listens on", () => {
  const c = container();
  const ports = new Map((c.ports as Obj[]).map((p) => [p.name, p.containerPort]));
  const cfg = config();
  assertEquals(ports.get("admin"), cfg.admin?.listen.port);
  assertEquals(cfg.admin?.listen.hostname, "0.0.0.0", "the kubelet probes the pod IP");
  assertEquals(ports.get("http"), cfg.listen.http?.port);
  assertEquals(c.readinessProbe.httpGet, { path: "/readyz", port: "admin" });
  assertEquals(c.livenessProbe.httpGet, { path: "/healthz", port: "admin" });
  assertEquals(deployment().spec.replicas, 3);
});

Deno.test("deploy: the Deployment runs unprivileged on a read-only root filesystem", () => {
  const sc = container().securityContext;
  assertEquals(sc.runAsNonRoot, true);
  assertEquals(sc.readOnlyRootFilesystem, true);
  assertEquals(sc.allowPrivilegeEscalation, false);
  assertEquals(sc.capabilities.drop, ["ALL"]);
  assertEquals(sc.seccompProfile, { type: "RuntimeDefault" });
  const resources = container().resources;
  assert(resources.requests.cpu && resources.requests.memory && resources.limits.memory);
  // the image's user is the one the pod asks for, by number (runAsNonRoot needs a number)
  const user = Number(dockerfile().user[0]?.split(":")[0]);
  assertGreater(user, 0);
  assertEquals(deployment().spec.template.spec.securityContext.runAsUser, user);
});

Deno.test("deploy: the ConfigMap is mounted where the image reads its config, and the grace period covers preStop + drain", () => {
  const spec = deployment().spec.template.spec;
  const mount = (container().volumeMounts as Obj[]).find((m) =>
    CONFIG_FILE.startsWith(`${m.mountPath}/`)
  );
  assert(mount, `no volume mounted above ${CONFIG_FILE}`);
  const volume = (spec.volumes as Obj[]).find((v) => v.name === mount.name);
  assertEquals(volume?.configMap?.name, object("ConfigMap").metadata.name);
  const key = CONFIG_FILE.slice(mount.mountPath.length + 1);
  assertEquals(typeof object("ConfigMap").data[key], "string", `ConfigMap key ${key}`);
  assertEquals(dockerfile().entrypoint, ["/unload", "run", "--config", CONFIG_FILE]);
  const preStop = container().lifecycle.preStop.sleep.seconds as number;
  assertGreater(preStop, 0);
  assertGreater(
    spec.terminationGracePeriodSeconds * 1000,
    preStop * 1000 + config().timeouts.drain,
  );
});

Deno.test("deploy: the Service and the PodDisruptionBudget select the Deployment's pods", () => {
  const labels = deployment().spec.template.metadata.labels as Obj;
  assertEquals(deployment().spec.selector.matchLabels, labels);
  const svc = object("Service", "unload");
  assertEquals(svc.spec.selector, labels);
  const names = (container().ports as Obj[]).map((p) => p.name);
  for (const p of svc.spec.ports as Obj[]) assert(names.includes(p.targetPort), p.targetPort);
  assertEquals(object("PodDisruptionBudget").spec.selector.matchLabels, labels);
});

Deno.test("deploy: the ConfigMap's config passes `main.ts validate` and its SRV name is the headless Service's", async () => {
  const dir = await Deno.makeTempDir({ prefix: "unload-deploy-" });
  try {
    const file = `${dir}/unload.yaml`;
    await Deno.writeTextFile(file, configText());
    const r = await runCli(["validate", "--config", file], { perms: ["--allow-read"] });
    assertEquals(r.code, 0, r.stderr);
    assertStringIncludes(r.stdout, `${file}: ok`);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
  const web = object("Service", "web");
  assertEquals(web.spec.clusterIP, "None", "headless: one SRV record per pod");
  const port = (web.spec.ports as Obj[])[0]!;
  const ns = web.metadata.namespace ?? "default";
  const srv =
    `_${port.name}._${port.protocol.toLowerCase()}.${web.metadata.name}.${ns}.svc.cluster.local`;
  assertEquals(srv, "_http._tcp.web.default.svc.cluster.local");
  assertEquals(config().routes.map((r) => r.srv), [srv]);
});

/** Every module under src/ that `new Worker(new URL("./x.ts", import.meta.url))` starts, from the root. */
function workerModules(): string[] {
  const found: string[] = [];
  const walk = (dir: string) => {
    for (const e of Deno.readDirSync(new URL(dir, ROOT))) {
      if (e.isDirectory) walk(`${dir}${e.name}/`);
      else if (e.name.endsWith(".ts")) {
        const text = Deno.readTextFileSync(new URL(`${dir}${e.name}`, ROOT));
        for (const m of text.matchAll(/new Worker\(\s*new URL\("\.\/([^"]+)"/g)) {
          found.push(`${dir}${m[1]}`);
        }
      }
    }
  };
  walk("src/");
  return found.sort();
}

Deno.test("deploy: every Worker module is --include'd by the compile task, the Dockerfile and the release workflow (deno compile leaves workers out otherwise)", () => {
  const workers = workerModules();
  assertGreater(workers.length, 1, "the request workers and the bcrypt worker");
  const release = Deno.readTextFileSync(new URL(".github/workflows/release.yml", ROOT));
  const commands = {
    "deno.json compile": denoJson.tasks.compile,
    "deno.json compile:all": denoJson.tasks["compile:all"],
    "deploy/Dockerfile": dockerfile().compile ?? "",
    "release.yml": release.replaceAll("\\\n", " "),
  };
  for (const [where, command] of Object.entries(commands)) {
    for (const w of workers) assertStringIncludes(command, `--include=${w}`, where);
  }
});

Deno.test("deploy: the Dockerfile compiles with the flags of deno.json's compile task into a distroless non-root image", () => {
  const d = dockerfile();
  assert(d.compile, "no RUN deno compile line");
  assertEquals(compileFlags(d.compile), compileFlags(denoJson.tasks.compile));
  assert(compileFlags(d.compile).includes("--v8-flags=--max-semi-space-size=4"));
  assertEquals(d.from.length, 2, "two stages");
  assert(d.from[0]!.startsWith("denoland/deno:") && d.from[0]!.endsWith(" AS build"), d.from[0]);
  assert(d.from[1]!.startsWith("gcr.io/distroless/"), d.from[1]);
  const cfg = config();
  assertEquals(d.expose.sort(), [cfg.listen.http!.port, cfg.admin!.listen.port].sort());
  assertStringIncludes(d.text, "read-only");
});

// [Service] directives the unit must carry, as written.
const UNIT_DIRECTIVES = [
  "DynamicUser=yes",
  "LimitNOFILE=65536",
  "ProtectSystem=strict",
  "ProtectHome=yes",
  "NoNewPrivileges=yes",
  "PrivateTmp=yes",
  "CapabilityBoundingSet=",
  "ExecReload=/bin/kill -HUP $MAINPID",
  "Restart=on-failure",
  "KillSignal=SIGTERM",
];
const UNIT = `${DEPLOY}systemd/unload.service`;

Deno.test("deploy: the systemd unit carries the hardening, reload and stop directives", () => {
  const text = Deno.readTextFileSync(UNIT);
  const lines = text.split("\n").map((l) => l.trim());
  const service = lines.slice(lines.indexOf("[Service]"), lines.indexOf("[Install]"));
  for (const d of UNIT_DIRECTIVES) assert(service.includes(d), `missing ${d}`);
  assert(
    service.includes("#AmbientCapabilities=CAP_NET_BIND_SERVICE"),
    "AmbientCapabilities stays commented out (only for ports below 1024)",
  );
  assert(!service.some((l) => l.startsWith("AmbientCapabilities=")), "no ambient capabilities");
  const stop = service.find((l) => l.startsWith("TimeoutStopSec="))?.split("=")[1];
  assert(stop, "missing TimeoutStopSec");
  assertGreater(parseDuration(stop), DEFAULTS.timeouts.drain, "TimeoutStopSec above the drain");
  const exec = service.find((l) => l.startsWith("ExecStart="));
  assertEquals(exec?.split(" ").slice(1), ["run", "--config", CONFIG_FILE]);
});

function systemdAnalyze(): string | undefined {
  for (const p of ["/usr/bin/systemd-analyze", "/bin/systemd-analyze"]) {
    try {
      if (Deno.statSync(p).isFile) return p;
    } catch { /* next */ }
  }
  return undefined;
}

Deno.test({
  name: "deploy: systemd-analyze verify accepts the unit without a warning",
  // reported as ignored where systemd-analyze is not installed (the directives are still checked above)
  ignore: systemdAnalyze() === undefined,
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "unload-unit-" });
    try {
      // verify insists that ExecStart's program exists: point it at an executable stub
      const stub = `${dir}/unload`;
      await Deno.writeTextFile(stub, "#!/bin/sh\n", { mode: 0o755 });
      const text = Deno.readTextFileSync(UNIT);
      assertStringIncludes(text, "ExecStart=/usr/local/bin/unload ");
      const unit = `${dir}/unload.service`;
      await Deno.writeTextFile(
        unit,
        text.replace("ExecStart=/usr/local/bin/unload ", `ExecStart=${stub} `),
      );
      const out = await new Deno.Command(systemdAnalyze()!, {
        args: ["verify", "--man=no", unit],
        stdout: "piped",
        stderr: "piped",
      }).output();
      const said = new TextDecoder().decode(out.stderr) + new TextDecoder().decode(out.stdout);
      assertEquals(out.code, 0, said);
      // verify exits 0 on unknown keys and bad values: every complaint about the unit counts
      const complaints = said.split("\n").filter((l) => l.includes(unit));
      assertEquals(complaints, []);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});
