"""Security headers on every page: a Content-Security-Policy that allows only this site's own
scripts, styles, images and connections (the pages use no inline script), and no embedding."""

CONTENT_SECURITY_POLICY = "; ".join([
    "default-src 'self'",
    "script-src 'self'",
    "style-src 'self' 'unsafe-inline'",  # Django admin's widgets set a few style attributes
    "img-src 'self' data:",
    "media-src 'self' blob:",
    "connect-src 'self'",  # the signaling WebSocket: same origin (ws: or wss:)
    "frame-ancestors 'none'",
    "base-uri 'none'",
    "form-action 'self'",
])


class SecurityHeaders:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        response.setdefault("Content-Security-Policy", CONTENT_SECURITY_POLICY)
        return response
