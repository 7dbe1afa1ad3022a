"""Text sources, splits and token windows for training and evaluation."""
