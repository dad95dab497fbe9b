#!/bin/sh
# Fetch the browser assets the static book needs, from the npm registry (a few seconds):
# ipywidgets' HTML manager + require.js (widget state, e.g. progress bars), its icon fonts, and
# MathJax 3 (equations). Served with Sphinx's html_extra_path (see _config.yml), never from _static,
# where Jupyter Book would add every .js file to every page.
set -e
dest=${1:-_offline_js}
mkdir -p "$dest" && tmp=$(mktemp -d) && here=$(pwd) && cd "$tmp"
npm pack --silent @jupyter-widgets/html-manager@1.0.6 requirejs@2.3.7 mathjax@3.2.2 >/dev/null
tar xzf jupyter-widgets-html-manager-1.0.6.tgz package/dist
mkdir rq mj && tar xzf requirejs-2.3.7.tgz -C rq package/require.js && tar xzf mathjax-3.2.2.tgz -C mj package/es5
cd "$here"
cp "$tmp/package/dist/embed-amd.js" "$tmp/rq/package/require.js" "$dest/"
# The widget manager typesets widget labels with MathJax 2's API (MathJax.Hub.Queue), which throws
# "Cannot read properties of undefined (reading 'Queue')" under the book's MathJax 3 for every label
# and HTML widget (progress bars, sliders): use MathJax 3's typesetPromise when it is there instead.
old='void 0!==window.MathJax&&MathJax.Hub.Queue(["Typeset",MathJax.Hub,e])'
new='void 0!==window.MathJax\&\&(MathJax.typesetPromise?MathJax.typesetPromise([e]).catch(function(){}):MathJax.Hub\&\&MathJax.Hub.Queue(["Typeset",MathJax.Hub,e]))'
grep -qF "$old" "$dest/embed-amd.js" || { echo "fetch_offline_js.sh: embed-amd.js changed, MathJax patch not applied" >&2; exit 1; }
sed -i "s|$(printf '%s' "$old" | sed 's/[][\\.*^$|]/\\&/g')|$new|" "$dest/embed-amd.js"
grep -qF 'MathJax.typesetPromise([e])' "$dest/embed-amd.js"
# The widget manager loads its icon fonts relative to the page (chapter pages live in chapters/),
# from @jupyter-widgets/html-manager/dist/ or @jupyter-widgets/ depending on how it was loaded.
for fonts in "$dest/chapters/@jupyter-widgets/html-manager/dist" "$dest/chapters/@jupyter-widgets"; do
  mkdir -p "$fonts"
  for f in "$tmp"/package/dist/*.woff "$tmp"/package/dist/*.woff2 "$tmp"/package/dist/*.ttf "$tmp"/package/dist/*.eot "$tmp"/package/dist/*.svg; do
    [ -e "$f" ] && cp "$f" "$fonts/"
  done
done
rm -rf "$dest/es5" && cp -r "$tmp/mj/package/es5" "$dest/es5"
rm -rf "$tmp"
