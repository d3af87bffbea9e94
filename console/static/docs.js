// Starts Swagger UI on /api/docs from the files shipped in console/static (no CDN, and no inline script,
// so the page works offline under the same Content-Security-Policy as the rest of the console).
window.ui = SwaggerUIBundle({
  url: "/api/openapi.json",
  dom_id: "#swagger-ui",
  deepLinking: true,
  presets: [SwaggerUIBundle.presets.apis],
  layout: "BaseLayout",
});
