"""Offline tooling around the Pulumi program: preview, plan, policy analysis, preflight, smoke, diff.

Nothing here is imported by the Pulumi program itself; the program must run unchanged
under `pulumi up`, and this package only drives it (under the SDK's mock engine) or
checks what it deployed.
"""
