/**
 * A YAML document with positions: every error says `file:line: path: message`.
 *
 * @module
 */
import { isMap, isScalar, isSeq, LineCounter, type Node, parseDocument } from "./_yaml.ts";
import { parseDuration } from "./duration.ts";
import { type HostPort, parseHostPort } from "./address.ts";

/** Reads typed values out of YAML nodes, collecting positioned errors. */
export class Source {
  /** The file name used in error messages. */
  readonly file: string;
  /** Errors found so far, each `file:line: path: message`. */
  readonly errors: string[] = [];
  /** The document's top node, or null when it is empty. */
  readonly root: Node | null;
  readonly #lines = new LineCounter();

  /** Parses `text` (the contents of `file`); syntax errors are recorded. */
  constructor(file: string, text: string) {
    this.file = file;
    const doc = parseDocument(text, { lineCounter: this.#lines, uniqueKeys: true });
    for (const e of doc.errors) {
      const line = e.linePos?.[0]?.line ?? 1;
      // "… at line 4, column 3:" is followed by a code excerpt: keep the first line only
      this.errors.push(`${file}:${line}: ${e.message.split("\n")[0]!.replace(/:$/, "")}`);
    }
    this.root = (doc.contents as Node | null) ?? null;
  }

  /** Records an error at `node` (or line 1). */
  fail(node: Node | null | undefined, path: string, message: string): undefined {
    const offset = node?.range?.[0] ?? 0;
    const line = this.#lines.linePos(offset).line;
    this.errors.push(`${this.file}:${line}: ${path ? `${path}: ` : ""}${message}`);
    return undefined;
  }

  /** `file:line: path` of `node`, to prefix errors found later (reading the files it names). */
  where(node: Node | null | undefined, path: string): string {
    const line = this.#lines.linePos(node?.range?.[0] ?? 0).line;
    return `${this.file}:${line}: ${path}`;
  }

  /** The entries of a mapping; unknown keys are errors. */
  map(node: Node | null | undefined, path: string, keys: readonly string[]): Map<string, Node> {
    const out = new Map<string, Node>();
    if (node == null) return out;
    if (!isMap(node)) {
      this.fail(node, path, "must be a mapping");
      return out;
    }
    for (const pair of node.items) {
      const key = isScalar(pair.key) ? String(pair.key.value) : "";
      const keyNode = pair.key as Node;
      if (!keys.includes(key)) {
        this.fail(keyNode, join(path, key), `unknown key (expected one of: ${keys.join(", ")})`);
        continue;
      }
      out.set(key, (pair.value as Node | null) ?? keyNode);
    }
    return out;
  }

  /** The items of a sequence. */
  seq(node: Node | undefined, path: string): Node[] {
    if (node === undefined) return [];
    if (!isSeq(node)) {
      this.fail(node, path, "must be a list");
      return [];
    }
    return node.items as Node[];
  }

  /** A string scalar. */
  string(node: Node | undefined, path: string): string | undefined {
    if (node === undefined) return undefined;
    if (!isScalar(node) || typeof node.value !== "string" || node.value === "") {
      return this.fail(node, path, "must be a non-empty string");
    }
    return node.value;
  }

  /** An integer scalar within `[min, max]`. */
  int(node: Node | undefined, path: string, min: number, max: number): number | undefined {
    if (node === undefined) return undefined;
    const v = isScalar(node) ? node.value : undefined;
    if (typeof v !== "number" || !Number.isInteger(v) || v < min || v > max) {
      return this.fail(node, path, `must be an integer ${min}..${max}`);
    }
    return v;
  }

  /** A boolean scalar. */
  bool(node: Node | undefined, path: string): boolean | undefined {
    if (node === undefined) return undefined;
    const v = isScalar(node) ? node.value : undefined;
    if (typeof v !== "boolean") return this.fail(node, path, "must be true or false");
    return v;
  }

  /** A duration (`500ms`, `10s`) in milliseconds. */
  duration(node: Node | undefined, path: string): number | undefined {
    const s = this.#scalarText(node);
    if (s === undefined) return undefined;
    try {
      return parseDuration(s);
    } catch (e) {
      return this.fail(node, path, (e as Error).message);
    }
  }

  /** A size (`64KiB`, `1MiB`, `1GB`, or bytes) in bytes. */
  size(node: Node | undefined, path: string): number | undefined {
    const s = this.#scalarText(node);
    if (s === undefined) return undefined;
    const m = /^(\d+)\s*(B|KB|KiB|MB|MiB|GB|GiB)?$/.exec(s);
    if (!m) return this.fail(node, path, `must be a size like 16KiB or 1MiB: received "${s}"`);
    const unit: Record<string, number> = {
      B: 1,
      KB: 1e3,
      KiB: 1024,
      MB: 1e6,
      MiB: 1024 ** 2,
      GB: 1e9,
      GiB: 1024 ** 3,
    };
    return Number(m[1]) * unit[m[2] ?? "B"]!;
  }

  /** A `host:port` address. */
  address(node: Node | undefined, path: string): HostPort | undefined {
    const s = this.string(node, path);
    if (s === undefined) return undefined;
    try {
      return parseHostPort(s);
    } catch (e) {
      return this.fail(node, path, (e as Error).message);
    }
  }

  /** One of `choices`, or undefined when absent or not among them (an error is recorded). */
  choice<T extends string>(
    node: Node | undefined,
    path: string,
    choices: readonly T[],
  ): T | undefined {
    const s = this.string(node, path);
    if (s === undefined) return undefined;
    if (!(choices as readonly string[]).includes(s)) {
      return this.fail(node, path, `must be one of ${choices.join(", ")}: received "${s}"`);
    }
    return s as T;
  }

  #scalarText(node: Node | undefined): string | undefined {
    if (node === undefined) return undefined;
    return isScalar(node) ? String(node.value) : "";
  }
}

/** `a.b`, or `b` when `a` is empty. */
export function join(path: string, key: string): string {
  return path ? `${path}.${key}` : key;
}
