// The console's little JavaScript: htmx requests carry the session's CSRF token; nothing else is needed to use
// the console (every page works as plain forms).
document.addEventListener("htmx:configRequest", (event) => {
  const token = document.body.dataset.csrf;
  if (token) event.detail.headers["X-CSRF-Token"] = token;
});
