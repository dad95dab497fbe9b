#!/bin/sh
# Fetch axe-core, the accessibility checker the browser test injects into every page of the built
# book (tests/test_book_browser.py), from the npm registry: a pinned version, once, never at test
# time. It lands in _build/axe/ (default), outside the site: the book itself does not serve it.
set -e
AXE_VERSION=4.14.1
dest=${1:-_build/axe}
if [ -f "$dest/axe.min.js" ] && [ "$(cat "$dest/VERSION" 2>/dev/null)" = "$AXE_VERSION" ]; then exit 0; fi
mkdir -p "$dest" && tmp=$(mktemp -d) && here=$(pwd) && cd "$tmp"
npm pack --silent "axe-core@$AXE_VERSION" >/dev/null
tar xzf "axe-core-$AXE_VERSION.tgz" package/axe.min.js package/LICENSE
cd "$here"
cp "$tmp/package/axe.min.js" "$tmp/package/LICENSE" "$dest/"
echo "$AXE_VERSION" > "$dest/VERSION"
rm -rf "$tmp"
