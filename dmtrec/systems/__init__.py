"""Lightning systems: pass 1 (DMTet), pass 2 (fixed mesh) and the two-pass pipeline."""
