// Offline search over window.BOOK_SEARCH (written by the builder into search-index.js):
// every word typed must occur in a section; sections whose title holds a word come first.
(function () {
  'use strict';
  var box = document.getElementById('search-box');
  var results = document.getElementById('search-results');
  var index = window.BOOK_SEARCH || [];
  var root = window.BOOK_ROOT || '';
  if (!box || !results) { return; }

  function escapeHtml(s) {
    return s.replace(/[&<>"]/g, function (c) {
      return { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;' }[c];
    });
  }

  function search(query) {
    var words = query.toLowerCase().split(/\s+/).filter(Boolean);
    if (!words.length) { return []; }
    var hits = [];
    index.forEach(function (entry) {
      var title = entry.t.toLowerCase(), text = entry.x.toLowerCase(), score = 0;
      for (var i = 0; i < words.length; i++) {
        var inTitle = title.indexOf(words[i]) >= 0, inText = text.indexOf(words[i]) >= 0;
        if (!inTitle && !inText) { return; }
        score += (inTitle ? 10 : 0) + (inText ? 1 : 0);
      }
      hits.push({ score: score, entry: entry });
    });
    hits.sort(function (a, b) { return b.score - a.score; });
    return hits.slice(0, 30).map(function (h) { return h.entry; });
  }

  function snippet(text, word) {
    var at = text.toLowerCase().indexOf(word);
    if (at < 0) { return escapeHtml(text.slice(0, 120)); }
    var start = Math.max(0, at - 50);
    return (start ? '… ' : '') + escapeHtml(text.slice(start, at)) + '<mark>' +
      escapeHtml(text.slice(at, at + word.length)) + '</mark>' +
      escapeHtml(text.slice(at + word.length, at + word.length + 70)) + ' …';
  }

  function show() {
    var query = box.value.trim();
    if (!query) { results.hidden = true; results.innerHTML = ''; return; }
    var first = query.toLowerCase().split(/\s+/)[0];
    var found = search(query);
    results.innerHTML = found.length ? found.map(function (e) {
      return '<a href="' + escapeHtml(root + e.u) + '"><span class="hit-title">' +
        escapeHtml(e.t) + '</span><span class="hit-text">' + snippet(e.x, first) +
        '</span></a>';
    }).join('') : '<div class="none">No section holds all of these words.</div>';
    results.hidden = false;
  }

  box.addEventListener('input', show);
  box.addEventListener('keydown', function (event) {
    if (event.key === 'Escape') { box.value = ''; show(); }
    if (event.key === 'Enter') {
      var first = results.querySelector('a');
      if (first) { window.location.href = first.href; }
    }
  });
  document.addEventListener('keydown', function (event) {
    if (event.key === '/' && document.activeElement !== box) {
      event.preventDefault();
      box.focus();
    }
  });
  document.addEventListener('click', function (event) {
    if (!results.contains(event.target) && event.target !== box) { results.hidden = true; }
  });
})();
