"""Reading text and turning it into token ids: encodings, tokenizers, corpus encoding,
token files on disk and the BPTT batches read from them. Imports nothing above ``models``."""
