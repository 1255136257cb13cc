"""Scoring on a CPU: the weights' form (`weights`), the lean fused forward (`forward`),
the choice of form for this CPU (`runtime`) and the one thread all CPU model work runs on
(`thread`)."""
