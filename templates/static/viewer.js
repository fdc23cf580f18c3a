// The viewer: pages fitted to the width or zoomed without reloading (a sharper rendering is
// asked for only when the shown width needs one), previous/next and go-to-page, the keys
// ←/→ and PgUp/PgDn, the grant's time left counting down, and, once the grant has ended,
// why, in place of the pages. Without this script the page still works: plain images,
// links and forms.
(function () {
  "use strict";

  countdown();
  var root = document.getElementById("viewer");
  if (!root) return;
  root.classList.add("js");

  var pages = document.getElementById("pages");
  var imgs = Array.prototype.slice.call(pages.querySelectorAll("img[data-page]"));
  var base = root.dataset.base;
  var first = Number(root.dataset.first);
  var last = Number(root.dataset.last);
  var total = Number(root.dataset.total);
  var levels = root.dataset.zooms.split(",").map(Number);
  var zoom = root.dataset.zoom === "fit" ? "fit" : Number(root.dataset.zoom);
  var current = Number(root.dataset.at) || first;
  var select = document.getElementById("zoom");
  var go = document.getElementById("page-go");
  var status = document.getElementById("page-status");
  var prev = document.getElementById("page-prev");
  var next = document.getElementById("page-next");
  var ended = false;
  var pinnedUntil = 0;
  // A US-letter page at 100 % (816 px), until a page of this document has loaded.
  var GUESS_W100 = 816;
  var MAX_DPR = 1.5;

  function byPage(n) {
    return document.getElementById("page-" + n);
  }

  // The width of a page at 100 %, from its first rendering (this page's, else any page's).
  // Sharper renderings do not change it: a large page may be rendered at fewer pixels than
  // its zoom asks for, and would otherwise look smaller the more it is zoomed.
  function w100(img) {
    var known = [img].concat(imgs);
    for (var i = 0; i < known.length; i++) {
      if (known[i].dataset.w100) return Number(known[i].dataset.w100);
    }
    return GUESS_W100;
  }

  // The smallest zoom level at or above `want`, else the largest.
  function levelFor(want) {
    for (var i = 0; i < levels.length; i++) if (levels[i] >= want - 0.5) return levels[i];
    return levels[levels.length - 1];
  }

  // The percentage a page is shown at now.
  function shown(img) {
    if (zoom !== "fit") return zoom;
    var width = img.clientWidth || pages.clientWidth - 24;
    return (width * 100) / w100(img);
  }

  function rendering(img) {
    return Math.max(Number(img.dataset.zoom), Number(img.dataset.want || 0));
  }

  // Asks for a sharper rendering of `img` when the shown size needs one (never a smaller
  // one: a page already sharp enough is not fetched again).
  function sharpen(img) {
    if (ended) return;
    var dpr = Math.min(window.devicePixelRatio || 1, MAX_DPR);
    var need = levelFor(shown(img) * dpr);
    if (need > rendering(img)) {
      img.dataset.want = String(need);
      img.src = base + "/pages/" + img.dataset.page + "?zoom=" + need;
    }
  }

  function layout() {
    pages.classList.toggle("fit", zoom === "fit");
    pages.classList.toggle("zoomed", zoom !== "fit");
    imgs.forEach(function (img) {
      img.style.width = zoom === "fit" ? "" : Math.round((w100(img) * zoom) / 100) + "px";
    });
    imgs.forEach(sharpen);
    select.value = zoom === "fit" ? "fit" : String(zoom);
  }

  function query(n) {
    return "?" + (zoom === "fit" ? "" : "zoom=" + zoom + "&") + "p=" + n;
  }

  // Links to other windows and files keep the zoom in use.
  function relink() {
    var links = root.querySelectorAll(".viewer-windows a");
    var files = document.querySelectorAll("nav.files a");
    Array.prototype.slice.call(links).concat(Array.prototype.slice.call(files)).forEach(function (a) {
      var u = new URL(a.href, location.href);
      if (zoom === "fit") u.searchParams.delete("zoom");
      else u.searchParams.set("zoom", String(zoom));
      a.href = u.pathname + u.search;
    });
  }

  function remember() {
    try {
      history.replaceState(null, "", base + query(current) + "#page-" + current);
    } catch (e) {
      // The address stays as it was; nothing else depends on it.
    }
  }

  function setCurrent(n) {
    current = n;
    status.textContent = root.dataset.status.replace("{n}", String(n));
    if (document.activeElement !== go) go.value = String(n);
    setDisabled(prev, n <= 1);
    setDisabled(next, n >= total);
  }

  function setDisabled(a, off) {
    if (off) a.setAttribute("aria-disabled", "true");
    else a.removeAttribute("aria-disabled");
  }

  function scrollTo(n) {
    var img = byPage(n);
    if (!img) return;
    pinnedUntil = Date.now() + 400;
    pages.scrollTop = Math.max(0, img.offsetTop - 12);
    var box = pages.getBoundingClientRect();
    if (box.top < 0 || box.top > window.innerHeight * 0.5) pages.scrollIntoView({ block: "start" });
  }

  // Page n: scrolled to when this window holds it, else the window that does.
  function goTo(n) {
    if (ended || !isFinite(n)) return;
    n = Math.min(Math.max(Math.round(n), 1), total);
    if (n >= first && n <= last) {
      scrollTo(n);
      setCurrent(n);
      remember();
    } else {
      location.href = base + query(n) + "#page-" + n;
    }
  }

  // The page at the top third of the scroll container.
  function track() {
    if (Date.now() < pinnedUntil) return;
    var mark = pages.scrollTop + pages.clientHeight / 3;
    var n = first;
    for (var i = 0; i < imgs.length; i++) {
      if (imgs[i].offsetTop <= mark) n = Number(imgs[i].dataset.page);
      else break;
    }
    if (n !== current) {
      setCurrent(n);
      remember();
    }
  }

  function setZoom(z) {
    zoom = z === "fit" ? "fit" : Number(z);
    var keep = current;
    layout();
    relink();
    scrollTo(keep);
    setCurrent(keep);
    remember();
  }

  // The next zoom level up or down from what is shown now.
  function step(up) {
    var now = shown(byPage(current) || imgs[0]);
    var z;
    if (up) {
      z = levels.filter(function (l) { return l > now + 1; })[0];
      if (z === undefined) z = levels[levels.length - 1];
    } else {
      z = levels.filter(function (l) { return l < now - 1; }).pop();
      if (z === undefined) z = levels[0];
    }
    setZoom(z);
  }

  function caption(img, text) {
    var cap = img.parentNode.querySelector("figcaption");
    if (!cap) return;
    if (!cap.dataset.plain) cap.dataset.plain = cap.textContent;
    cap.textContent = cap.dataset.plain + (text ? " — " + text : "");
    cap.classList.toggle("viewer-failed", Boolean(text));
  }

  // The grant has ended: the pages make way for why, and what to do.
  function showEnded(body) {
    if (ended) return;
    ended = true;
    var g = body.grant || {};
    var box = document.createElement("div");
    box.id = "grant-ended";
    box.className = "viewer-ended";
    box.setAttribute("role", "alert");
    box.tabIndex = -1;
    var what = document.createElement("p");
    what.textContent = g.message || (body.error && body.error.message) || "";
    var todo = document.createElement("p");
    todo.textContent = (g.hint || "") + " ";
    if (g.request_url) {
      var a = document.createElement("a");
      a.href = g.request_url;
      a.textContent = g.request_label || g.request_url;
      todo.appendChild(a);
    }
    box.appendChild(what);
    box.appendChild(todo);
    root.parentNode.replaceChild(box, root);
    var left = document.getElementById("time-left");
    if (left) left.textContent = "";
    box.focus();
  }

  // A page that did not load: the grant has ended (say so), the renderer is busy (try
  // again when it says), or it cannot be shown (say so under the page).
  function failed(img) {
    if (ended) return;
    var tries = Number(img.dataset.tries || 0);
    fetch(img.src, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (res) {
        if (res.status === 403 && res.headers.get("X-Grant-State")) {
          return res.json().then(showEnded);
        }
        if ((res.ok || res.status === 503) && tries < 5) {
          var wait = res.ok ? 0 : parseInt(res.headers.get("Retry-After"), 10) || 2;
          img.dataset.tries = String(tries + 1);
          if (!res.ok) caption(img, root.dataset.busy);
          setTimeout(function () {
            img.src = base + "/pages/" + img.dataset.page + "?zoom=" + rendering(img) + "&try=" + (tries + 1);
          }, wait * 1000);
          return;
        }
        caption(img, root.dataset.failed);
      })
      .catch(function () {
        caption(img, root.dataset.failed);
      });
  }

  function loaded(img) {
    img.dataset.loaded = "1";
    if (!img.dataset.w100 && img.naturalWidth) {
      var at = Number(img.dataset.want || img.dataset.zoom);
      img.dataset.w100 = String((img.naturalWidth * 100) / at);
    }
    if (img.dataset.want) {
      img.dataset.zoom = img.dataset.want;
      delete img.dataset.want;
    }
    if (img.dataset.tries) caption(img, "");
    if (zoom !== "fit") {
      imgs.forEach(function (other) {
        if (other === img || !other.dataset.loaded) {
          other.style.width = Math.round((w100(other) * zoom) / 100) + "px";
        }
      });
    }
    sharpen(img);
  }

  imgs.forEach(function (img) {
    img.addEventListener("load", function () { loaded(img); });
    img.addEventListener("error", function () { failed(img); });
    if (img.complete && img.naturalWidth) loaded(img);
  });

  // View only: no context menu or dragging of page images (a discouragement, not a lock).
  pages.addEventListener("contextmenu", function (e) {
    if (e.target && e.target.tagName === "IMG") e.preventDefault();
  });
  pages.addEventListener("dragstart", function (e) {
    e.preventDefault();
  });

  pages.addEventListener("scroll", track, { passive: true });
  window.addEventListener("resize", function () {
    if (zoom === "fit") imgs.forEach(sharpen);
  });

  select.addEventListener("change", function () { setZoom(select.value); });
  document.getElementById("zoom-form").addEventListener("submit", function (e) {
    e.preventDefault();
    setZoom(select.value);
  });
  document.getElementById("zoom-in").addEventListener("click", function (e) {
    e.preventDefault();
    step(true);
  });
  document.getElementById("zoom-out").addEventListener("click", function (e) {
    e.preventDefault();
    step(false);
  });
  document.getElementById("page-form").addEventListener("submit", function (e) {
    e.preventDefault();
    goTo(parseInt(go.value, 10));
  });
  prev.addEventListener("click", function (e) {
    e.preventDefault();
    goTo(current - 1);
  });
  next.addEventListener("click", function (e) {
    e.preventDefault();
    goTo(current + 1);
  });
  document.addEventListener("keydown", function (e) {
    if (ended || e.altKey || e.ctrlKey || e.metaKey || e.defaultPrevented) return;
    var tag = e.target && e.target.tagName;
    if (tag === "INPUT" || tag === "SELECT" || tag === "TEXTAREA") return;
    if (e.key === "ArrowLeft" || e.key === "PageUp") {
      e.preventDefault();
      goTo(current - 1);
    } else if (e.key === "ArrowRight" || e.key === "PageDown") {
      e.preventDefault();
      goTo(current + 1);
    }
  });

  layout();
  relink();
  var hash = /^#page-(\d+)$/.exec(location.hash);
  var start = hash ? Number(hash[1]) : current;
  setCurrent(start >= first && start <= last ? start : current);
  if (current !== first) scrollTo(current);

  // The grant's time left, counting down; when it runs out the page is loaded again and
  // says that the grant has expired.
  function countdown() {
    var el = document.getElementById("time-left");
    if (!el) return;
    var end = Date.now() + Number(el.dataset.seconds) * 1000;
    function format(s) {
      var d = Math.floor(s / 86400);
      var h = Math.floor((s % 86400) / 3600);
      var m = Math.floor((s % 3600) / 60);
      var text;
      if (d > 0) text = el.dataset.fmtDh.replace("{d}", d).replace("{h}", h);
      else if (h > 0) text = el.dataset.fmtHm.replace("{h}", h).replace("{m}", m);
      else if (m > 0) text = el.dataset.fmtM.replace("{m}", m);
      else text = el.dataset.fmtNone;
      return el.dataset.label.replace("{left}", text);
    }
    function tick() {
      if (ended) return;
      var s = Math.floor((end - Date.now()) / 1000);
      if (s <= 0) {
        el.textContent = "";
        setTimeout(function () { location.reload(); }, 1500);
        return;
      }
      el.textContent = format(s);
      setTimeout(tick, Math.min(((s % 60) + 1) * 1000, 60000));
    }
    tick();
  }
})();
