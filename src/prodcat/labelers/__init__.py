"""The labelers behind one interface: seq2seq (ByT5, Flan-T5, the multimodal ByT5, constrained
decoding) and character n-grams."""
