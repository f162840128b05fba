/**
 * The longest matching path prefix among one host's routes: a radix tree (a trie
 * whose edges carry whole strings). Finding a request path's route walks at most
 * one edge per step down the tree, so it costs O(length of the path), however many
 * routes the host has.
 *
 * @module
 */

interface Node<T> {
  /** The characters on the edge from the parent (empty for the root). */
  label: string;
  /** The value of the route whose path ends at this node; `has` says whether there is one. */
  value: T | undefined;
  has: boolean;
  /** The first child (most nodes have one at most: no map for them). */
  first: Node<T> | undefined;
  /** With two children or more: all of them, by the first character code of their label. */
  children: Map<number, Node<T>> | undefined;
}

function node<T>(label: string): Node<T> {
  return { label, value: undefined, has: false, first: undefined, children: undefined };
}

// The child of `at` whose label starts with character code `c`.
function childOf<T>(at: Node<T>, c: number): Node<T> | undefined {
  const first = at.first;
  if (first === undefined || first.label.charCodeAt(0) === c) return first;
  return at.children?.get(c);
}

// Makes `child` the child of `at` for its label's first character (new, or replacing one).
function setChild<T>(at: Node<T>, child: Node<T>): void {
  const c = child.label.charCodeAt(0);
  const first = at.first;
  if (first === undefined) {
    at.first = child;
  } else if (first.label.charCodeAt(0) === c) {
    at.first = child;
    at.children?.set(c, child);
  } else {
    (at.children ??= new Map([[first.label.charCodeAt(0), first]])).set(c, child);
  }
}

/**
 * Path prefixes and their values; {@linkcode PrefixTree.longest} finds the value of
 * the longest prefix of a path, as a plain string prefix (`/api` matches `/apix`).
 * Of equal prefixes the first one added is kept.
 *
 * @example
 * ```ts
 * import { assert } from "@std/assert";
 * import { PrefixTree } from "./_prefix_tree.ts";
 * const t = new PrefixTree<string>();
 * t.add("/", "root");
 * t.add("/api", "api");
 * t.add("/api", "later"); // the first one stays
 * assert(t.longest("/api/users") === "api" && t.longest("/apix") === "api");
 * assert(t.longest("/index.html") === "root" && t.longest("x") === undefined);
 * ```
 */
export class PrefixTree<T> {
  readonly #root: Node<T> = node("");
  #size = 0;

  /** Prefixes held (equal ones counted once). */
  get size(): number {
    return this.#size;
  }

  /** Adds `prefix` with `value`, unless `prefix` is already there. Costs O(length of prefix). */
  add(prefix: string, value: T): void {
    let at = this.#root;
    let pos = 0;
    while (pos < prefix.length) {
      const child = childOf(at, prefix.charCodeAt(pos));
      if (child === undefined) {
        const leaf = node<T>(prefix.slice(pos));
        setChild(at, leaf);
        at = leaf;
        pos = prefix.length;
        break;
      }
      const label = child.label;
      let common = 1; // the first character matched by the map key
      while (
        common < label.length && pos + common < prefix.length &&
        label.charCodeAt(common) === prefix.charCodeAt(pos + common)
      ) common++;
      if (common < label.length) { // split the edge: child keeps the rest of its label
        const middle = node<T>(label.slice(0, common));
        setChild(at, middle); // in child's place: same first character
        child.label = label.slice(common);
        middle.first = child;
        at = middle;
      } else {
        at = child;
      }
      pos += common;
    }
    if (at.has) return;
    at.has = true;
    at.value = value;
    this.#size++;
  }

  /** The value of the longest added prefix of `path`, or undefined. Costs O(length of path). */
  longest(path: string): T | undefined {
    let at = this.#root;
    let best = at.value;
    let pos = 0;
    while (pos < path.length) {
      const child = childOf(at, path.charCodeAt(pos));
      if (child === undefined) break;
      const label = child.label;
      if (label.length > 1 && !path.startsWith(label, pos)) break;
      pos += label.length;
      at = child;
      if (at.has) best = at.value;
    }
    return best;
  }
}
