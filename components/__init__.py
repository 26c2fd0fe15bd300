"""The Pulumi program's components, one concern per module or package.

Shared layer (used by every other part, imports none of them): `config` (the inventory),
`aws_regions`, `keys` (KMS), `iam` (policy helpers), `alerting` (conventions both platforms page by), `network`, `load_balancer` (the
internal NLB every model sits behind).
`serving/` turns a model into what runs: catalog facts, sizing, runtime flags, weights.
`ec2/` and `eks/` are the two platforms; they never import each other.
`gateway/` is the public face; `observability` watches the request path end to end.
`platforms` composes a platform for the inventory; `admission` refuses an inventory before
anything registers. Component type tokens keep the module each was first released in
(`deepseek:<module>:<Noun>`): they are part of every child's URN.
"""
