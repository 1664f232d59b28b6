"""Training: one schedule (loop) over two steppers, a single run (single) and a stacked
ensemble of runs (stacked, forward), and the checkpoint format both write."""
