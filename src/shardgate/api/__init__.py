"""Wire models and helpers of the public OpenAI-compatible API."""
