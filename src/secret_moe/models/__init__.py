"""Loading language models and locating a layer's MLP, by architecture."""
