"""The labelers and their one interface: seq2seq (ByT5, Flan-T5, multimodal ByT5, constrained decoding) and character n-grams."""
