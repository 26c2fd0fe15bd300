"""What runs on a GPU, platform-neutral. A model flows through once, in one direction:
`catalog` (architecture, instance and image facts) -> `sizing` (memory, KV cache, capacity)
-> `runtimes` (flags and environment per vLLM, TGI, Ollama); `weights` says how downloaded
weights are verified on either platform; `priority_middleware` is a file shipped into vLLM
containers (the gateway's priority header becomes the body's `priority`)."""
