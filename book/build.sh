#!/usr/bin/env bash
# Build the book: the one command for readers and CI.
#
#   bash book/build.sh [extra jupyter-book options]      ->  _build/html/index.html
#
# The pages load MathJax 3, require.js and the Jupyter widget manager from the book's own folder
# (_build/html/js/), never from a CDN, so math and the saved widgets render with no network.
# These JavaScript packages come from the npm registry at the exact versions of
# book/vendor/package-lock.json; they are installed once into book/vendor/node_modules and the files
# the pages use are copied to book/_vendor/js/ (both git-ignored), which _config.yml serves through
# html_extra_path. Then the book is built from the committed notebook outputs, warnings as errors.
set -euo pipefail
cd "$(dirname "$0")/.."

vendor=book/vendor
site=book/_vendor/js
if [ ! -f "$vendor/node_modules/.package-lock.json" ] ||
   [ "$vendor/package-lock.json" -nt "$vendor/node_modules/.package-lock.json" ]; then
  echo "installing the book's JavaScript (npm ci in $vendor)"
  npm ci --prefix "$vendor" --no-audit --no-fund --ignore-scripts --loglevel=error
  rm -rf "$site"
fi
if [ ! -f "$site/.complete" ]; then
  rm -rf "$site" && mkdir -p "$site/mathjax" "$site/html-manager"
  mj="$vendor/node_modules/mathjax/es5"
  # the combined TeX + MathML -> CommonHTML component, and what it loads on demand: TeX extensions,
  # the CHTML fonts, the menu and its accessibility tools
  cp "$mj/tex-mml-chtml.js" "$site/mathjax/"
  mkdir -p "$site/mathjax/output"
  cp -r "$mj/input" "$mj/ui" "$mj/a11y" "$mj/sre" "$mj/adaptors" "$site/mathjax/"
  cp -r "$mj/output/chtml" "$site/mathjax/output/"
  cp "$vendor/node_modules/mathjax/LICENSE" "$site/mathjax/"
  cp "$vendor/node_modules/requirejs/require.js" "$vendor/widgets-offline.js" "$site/"
  hm="$vendor/node_modules/@jupyter-widgets/html-manager/dist"
  cp "$hm/embed-amd.js" "$hm"/*.woff2 "$hm"/*.woff "$hm"/*.ttf "$site/html-manager/"
  touch "$site/.complete"
fi

exec jupyter-book build . -W -n --keep-going "$@"
