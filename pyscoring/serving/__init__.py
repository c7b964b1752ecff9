"""Scoring on the PS path: Python worker nodes that read their variables from parameter servers."""
