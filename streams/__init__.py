"""Stream processing: faust agents and the storage and decoding adapters they use."""
