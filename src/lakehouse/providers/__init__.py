"""Model providers and the model-name routing shared by chat and embeddings."""
