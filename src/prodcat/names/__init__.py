"""Name synthesis: the chat prompts, teacher and student generation, the LoRA namer and its merge."""
