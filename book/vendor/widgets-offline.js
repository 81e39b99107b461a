// Loaded before require.js and the widget manager on pages with saved widget state (see _config.yml).
(function () {
  // The widget manager finds its fonts next to the module it was loaded as; point that module name at
  // the book's copy (this file's folder), not at the page's own folder.
  var here = document.currentScript.src.replace(/[?#].*$/, "").replace(/[^/]*$/, "");
  window.require = {
    paths: { "@jupyter-widgets/html-manager/dist": here + "html-manager" },
  };

  // ipywidgets typesets widget labels with MathJax 2's API (MathJax.Hub.Queue); the book runs MathJax 3.
  // Give MathJax 3 that entry point once it has started.
  var config = (window.MathJax = window.MathJax || {});
  config.startup = config.startup || {};
  var ready = config.startup.ready;
  config.startup.ready = function () {
    (ready || window.MathJax.startup.defaultReady)();
    window.MathJax.Hub = {
      Queue: function (job) {
        var element = Array.isArray(job) ? job[2] : undefined;
        window.MathJax.startup.promise
          .then(function () { return window.MathJax.typesetPromise(element ? [element] : undefined); })
          .catch(function (err) { console.warn("MathJax could not typeset a widget:", err); });
      },
    };
  };
})();
