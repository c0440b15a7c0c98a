"""Tokenizer training: `tokenmill train` learns a tokenizer from the corpus itself (offline)."""
