"""The public face: REST API with keys on every method and usage plans (`api`), the web ACL
in front of it (`waf`), and the OpenAI-shaped error responses both answer with (`responses`)."""
