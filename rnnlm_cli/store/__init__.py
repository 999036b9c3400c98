"""What is kept on disk about a model: the checkpoint format, tensor checks on everything
loaded, exports, and finding the tokenizer a file holds."""
