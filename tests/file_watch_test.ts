import { assertEquals } from "@std/assert";
import { FileWatch } from "../src/server/file_watch.ts";

/** Re-points `dir/..data` at a new dir holding `a.txt` = `text`, the kubelet's way. */
async function swap(dir: string, stamp: string, text: string): Promise<void> {
  await Deno.mkdir(`${dir}/${stamp}`);
  await Deno.writeTextFile(`${dir}/${stamp}/a.txt`, text);
  await Deno.symlink(stamp, `${dir}/..data_tmp`);
  await Deno.rename(`${dir}/..data_tmp`, `${dir}/..data`);
}

Deno.test("file watch: a ..data swap with the same bytes is no change; new bytes are one change; a deleted file is one more", async () => {
  const dir = await Deno.makeTempDir({ prefix: "unload-watch-" });
  const calls: string[] = [];
  let next = Promise.withResolvers<void>();
  await swap(dir, "..v1", "one");
  await Deno.symlink("..data/a.txt", `${dir}/a.txt`);
  const watch = await FileWatch.start([`${dir}/a.txt`], {
    interval: 20,
    settle: 10,
    onChange: async () => {
      calls.push(await Deno.readTextFile(`${dir}/a.txt`).catch(() => "(missing)"));
      next.resolve();
    },
  });
  try {
    await swap(dir, "..v2", "one");
    await Deno.remove(`${dir}/..v1`, { recursive: true });
    await swap(dir, "..v3", "two"); // bytes are compared, not events: only this is a change
    await next.promise;
    assertEquals(calls, ["two"]);
    next = Promise.withResolvers();
    await Deno.remove(`${dir}/..v3/a.txt`);
    await next.promise;
    assertEquals(calls, ["two", "(missing)"]);
    assertEquals(watch.changes, 2);
  } finally {
    await watch.close();
    await Deno.remove(dir, { recursive: true });
  }
});
