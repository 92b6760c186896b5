// The overview updates itself: every data-refresh seconds the page is fetched again and its
// figures replaced. No other script runs in the console; every page works without it.
(function () {
  "use strict";
  const region = document.getElementById("figures");
  if (!region) return;
  const seconds = Math.max(5, parseInt(region.dataset.refresh || "30", 10));
  async function update() {
    try {
      const response = await fetch(window.location.href, {
        credentials: "same-origin",
        headers: { Accept: "text/html" },
      });
      if (!response.ok || response.redirected) return;
      const page = new DOMParser().parseFromString(await response.text(), "text/html");
      const fresh = page.getElementById("figures");
      if (fresh) document.getElementById("figures").replaceWith(fresh);
    } catch (error) {
      // The next round tries again.
    }
  }
  window.setInterval(update, seconds * 1000);
})();
