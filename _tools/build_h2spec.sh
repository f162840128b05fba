#!/usr/bin/env bash
# Builds h2spec (the HTTP/2 conformance suite, github.com/summerwind/h2spec) offline from
# Debian's Go packages, in GOPATH mode, outside the repository; prints the binary's path.
#   needs: golang-go golang-github-spf13-cobra-dev golang-golang-x-net-dev
#          golang-github-fatih-color-dev, and h2spec's source: a clone already in
#          $H2SPEC_DIR, or H2SPEC_REPO naming one (a path or URL). It never reaches out by itself.
#   usage: H2SPEC=$(bash _tools/build_h2spec.sh) && H2SPEC=$H2SPEC deno test --allow-all tests/h2spec_test.ts
# Env: H2SPEC_DIR (work dir, /tmp/h2spec-gopath), H2SPEC_COMMIT (af83a65, the commit docs/h2.md ran),
#   H2SPEC_REPO (where to clone from: a local mirror, or https://github.com/summerwind/h2spec).
set -euo pipefail
dir=${H2SPEC_DIR:-/tmp/h2spec-gopath}
commit=${H2SPEC_COMMIT:-af83a65}
src=$dir/src/github.com/summerwind/h2spec
if [ ! -x "$dir/bin/h2spec" ]; then
  if [ ! -d "$src/.git" ]; then
    if [ -z "${H2SPEC_REPO:-}" ]; then
      echo "no h2spec source in $src and no H2SPEC_REPO to clone it from" >&2
      exit 1
    fi
    rm -rf "$src"
    mkdir -p "$(dirname "$src")"
    git clone -q "$H2SPEC_REPO" "$src" >&2
  fi
  git -C "$src" -c advice.detachedHead=false checkout -q "$commit" >&2
  mkdir -p "$dir/bin"
  (cd "$src" && GOPATH="$dir:/usr/share/gocode" GO111MODULE=off GOCACHE="$dir/cache" \
    go build -o "$dir/bin/h2spec" ./cmd/h2spec) >&2
fi
echo "$dir/bin/h2spec"
