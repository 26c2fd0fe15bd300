"""`make loadtest`: a bounded streaming load generator for OpenAI-compatible endpoints.

Modules by concern: workload (what is sent), runner (how: asyncio + httpx, Retry-After),
stats (pure statistics), report (JSON and PNG), calibrate (measured vs estimated capacity).
"""
