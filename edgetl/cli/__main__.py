"""`python -m edgetl.cli ...` (used with torchrun for multi-GPU fine-tuning)."""
from edgetl.cli import main

main()
