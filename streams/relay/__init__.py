"""Multi-process mode (REDIS_URL): one media owner encodes, daphne workers relay to listeners.

wire     the packet format, channel and key names, StreamConfig as JSON
owner    the media owner: demand from workers -> capture, encode once, publish
worker   a worker's hub for one stream: subscribe, re-stamp, push to its listeners
"""
