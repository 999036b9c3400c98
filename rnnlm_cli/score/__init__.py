"""Using a trained model to score text: evaluation, token and word scores, report formats,
n-gram mixing, ARPA files, n-best rescoring, the neural cache and dynamic evaluation."""
