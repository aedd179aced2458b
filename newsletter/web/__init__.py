"""The subscription web service (`newsletter serve`): Starlette on uvicorn.

app.py            create_app: the routes and their handlers, paths.public
subscriptions.py  the rules of sign-up, confirmation, unsubscribe, edition
                  changes and their signed links; no HTTP (the CLI can use it)
pages.py          the bilingual pages
safety.py         CSRF, security headers, body limit, rate limits, access log
guard.py          slow clients: a deadline per request, a connection cap, log floods
server.py         the socket and the uvicorn loop (`serve`)
"""
