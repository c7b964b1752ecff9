"""Reference models that pyscoring trains, exports and scores."""
