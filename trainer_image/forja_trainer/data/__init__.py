"""Reading datasets from disk and generating small learnable synthetic ones."""
