"""Training: the run, the truncated-BPTT loop, objective, optimizers, schedules, the training
state of ``.last.pt``, resume, promotion and what a run writes beside the model."""
