"""pytest plugin: `fake_ollama` and `fake_deepseek` fixtures (filled in by the doubles)."""
