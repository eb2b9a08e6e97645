"""shoal: the patterns of Designing Distributed Systems as real, running software."""
