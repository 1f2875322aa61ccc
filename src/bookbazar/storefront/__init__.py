"""The storefront: plain HTML pages and small vanilla JS modules, served by the API at `/`
and built only on the public REST API and Socket.IO."""
