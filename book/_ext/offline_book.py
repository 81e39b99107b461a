"""Sphinx extension for the book: pages that need nothing from the network.

- The "Open in Colab" badge at the top of each chapter is an image on Colab's server; it is drawn from
  the book's own copy (book/images/colab-badge.svg) instead, the link itself unchanged.
- Scripts registered twice (sphinx-thebe's and sphinx-togglebutton's settings, added again when the
  environment is read) are written once: a second ``const THEBE_JS_URL`` is a script error.
"""
from __future__ import annotations

from docutils import nodes

REMOTE_BADGES = {
    "https://colab.research.google.com/assets/colab-badge.svg": "/book/images/colab-badge.svg",
}


def use_local_badges(app, doctree: nodes.document) -> None:
    for image in doctree.findall(nodes.image):
        local = REMOTE_BADGES.get(image.get("uri", ""))
        if local:
            image["uri"] = local


def drop_duplicate_scripts(app, pagename, templatename, context, doctree) -> None:
    scripts = context.get("script_files")
    if not scripts:
        return
    seen, unique = set(), []
    for script in scripts:
        # the same inline script is registered once with filename None and once with ""
        key = (script.filename or "", tuple(sorted(script.attributes.items())))
        if key not in seen:
            seen.add(key)
            unique.append(script)
    scripts[:] = unique


def setup(app):
    # before Sphinx's image collector (priority 500), so the local file is copied like any image
    app.connect("doctree-read", use_local_badges, priority=400)
    app.connect("html-page-context", drop_duplicate_scripts, priority=900)
    return {"version": "1.0", "parallel_read_safe": True, "parallel_write_safe": True}
