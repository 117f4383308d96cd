"""Evaluation: Frechet distance and Inception features, Inception Score, digit mode coverage, 2-D distances."""
