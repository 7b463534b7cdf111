// Starts Swagger UI on /docs. A file of the API's own origin, not an inline script, so the page's
// Content-Security-Policy can refuse inline scripts.
const root = document.getElementById("swagger-ui");
window.ui = SwaggerUIBundle({
  url: root.dataset.openapiUrl,
  dom_id: "#swagger-ui",
  layout: "BaseLayout",
  deepLinking: true,
  showExtensions: true,
  showCommonExtensions: true,
  // Swagger UI's default sends the spec's address to a public validator and shows its badge.
  validatorUrl: null,
  presets: [SwaggerUIBundle.presets.apis, SwaggerUIBundle.SwaggerUIStandalonePreset],
});
