"""The shipped pretrained checkpoint (package data)."""
