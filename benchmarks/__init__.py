"""Scripts that measure: quality on datasets and the sample corpus, throughput, GPU checks."""
